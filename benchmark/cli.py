"""The ``fhbench`` command line. Thin: parse, call the engine, print. No logic here."""
from __future__ import annotations

import os
import sys

import click

from .errors import FhbenchError

DEFAULT_STORE = os.environ.get("FHBENCH_STORE", "results/fhbench.sqlite")
DEFAULT_DATA = os.environ.get("FHBENCH_DATA", "data")


class _Group(click.Group):
    """Turns every FhbenchError into one line on stderr and exit status 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except FhbenchError as err:
            click.echo(f"fhbench: error: {err}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("fhbench: interrupted; nothing was written to the store "
                       "(finished chunks are cached: re-run to resume)", err=True)
            sys.exit(130)


@click.group(cls=_Group)
@click.version_option(package_name="fhbench")
def main():
    """fhbench: task-based evaluation of face super-resolution."""


@main.command()
@click.option("--model", required=True, help="registered name, pkg.module:build, *.pt (TorchScript), *.onnx, or a folder of SR images")
@click.option("--protocol", required=True, help="protocol name (see `fhbench protocols`)")
@click.option("--scale", type=int, default=None, help="degradation scale (default: the protocol's)")
@click.option("--evaluator", default="sface", show_default=True, help="face-recognition model for the task metrics")
@click.option("--data-root", default=DEFAULT_DATA, show_default=True, help="dataset folder ($FHBENCH_DATA)")
@click.option("--store", default=DEFAULT_STORE, show_default=True, help="SQLite results file ($FHBENCH_STORE)")
@click.option("--weights", default=None, help="SR model weights (for registered models)")
@click.option("--evaluator-weights", default=None, help="face-recognition weights file")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--cache-dir", default=None, help="cache of per-chunk results (default ~/.cache/fhbench; '' disables)")
@click.option("--clamp/--no-clamp", default=False, help="clamp model output to [0, 1] instead of refusing it")
@click.option("--upsampled-input", is_flag=True, help="feed user models the LR bicubic-upsampled to HR size")
@click.option("--name", default=None, help="model name in the leaderboard (default: the model's)")
@click.option("--device", default="cpu", show_default=True)
@click.option("--quiet", is_flag=True, help="no progress bars")
def run(model, protocol, scale, evaluator, data_root, store, weights, evaluator_weights, batch_size,
        cache_dir, clamp, upsampled_input, name, device, quiet):
    """Run one model on one protocol and store the result."""
    from .leaderboard import metric_format
    from .runner import RunOptions
    from .runner import run as run_protocol

    result = run_protocol(RunOptions(
        model=model, protocol=protocol, scale=scale, evaluator=evaluator, data_root=data_root,
        store=store, weights=weights, evaluator_weights=evaluator_weights, batch_size=batch_size,
        cache_dir=cache_dir, clamp=clamp, upsampled_input=upsampled_input, device=device,
        progress=not quiet, name=name))
    scale_txt = "no degradation" if result["scale"] == 1 else f"x{result['scale']}"
    click.echo(f"{result['model']} on {result['protocol']} ({scale_txt}, evaluator {result['evaluator']}):")
    for key, value in result["metrics"].items():
        header, factor, digits, _, _ = metric_format(key)
        click.echo(f"  {key:>14}: {value * factor:.{digits}f}" if isinstance(value, float) else f"  {key:>14}: {value}")
    click.echo(f"stored as run {result['id']} in {store}")


@main.command()
@click.option("--protocol", default=None)
@click.option("--scale", type=int, default=None)
@click.option("--evaluator", default=None)
@click.option("--format", "fmt", type=click.Choice(["md", "csv", "latex", "json"]), default="md", show_default=True)
@click.option("--store", default=DEFAULT_STORE, show_default=True)
def leaderboard(protocol, scale, evaluator, fmt, store):
    """Ranked tables of the stored runs, one per protocol, scale and evaluator."""
    from pathlib import Path

    from .leaderboard import build_tables, format_tables
    from .store import ResultStore

    if not Path(store).exists():
        raise FhbenchError(f"no results store at {store}; run `fhbench run` first or pass --store")
    click.echo(format_tables(build_tables(ResultStore(store), protocol, scale, evaluator), fmt), nl=False)


def _print_entries(entries):
    for e in entries:
        why = e.why_unavailable()
        state = "ok " if why is None else "n/a"
        click.echo(f"{state} {e.name:<18} {e.summary}")
        if why:
            click.echo(f"    {why}")


@main.command()
def models():
    """Registered SR models (other kinds: pkg.mod:build, *.pt, *.onnx, a folder)."""
    from .registry import MODELS

    _print_entries(MODELS.entries())
    click.echo("also: --model pkg.module:build | file.pt (TorchScript) | file.onnx | folder/ of SR images")


@main.command()
def evaluators():
    """Face-recognition evaluators, and why any cannot run here."""
    from .registry import EVALUATORS

    _print_entries(EVALUATORS.entries())


@main.command()
def protocols():
    """Protocols (one YAML file each in protocols/)."""
    from .protocols import list_protocols, load_protocol

    for name in list_protocols():
        p = load_protocol(name)
        click.echo(f"{name:<16} {p.summary} [dataset {p.dataset}, scales {p.scales}]")


@main.command()
@click.option("--data-root", default=DEFAULT_DATA, show_default=True)
def datasets(data_root):
    """Dataset readers, and whether --data-root holds their data."""
    from .registry import DATASETS

    for e in DATASETS.entries():
        try:
            e.obj(data_root)
            state, why = "ok ", ""
        except FhbenchError as err:
            state, why = "n/a", str(err)
        click.echo(f"{state} {e.name:<10} {e.summary}")
        if why:
            click.echo(f"    {why}")


if __name__ == "__main__":
    main()
