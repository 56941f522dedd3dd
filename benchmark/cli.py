"""The ``fhbench`` command line. Thin: parse, call the engine, print. No logic here."""
from __future__ import annotations

import os
import sys

import click

from benchmark.errors import FhbenchError

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


class StoredLevel(click.ParamType):
    """``--scale`` of the commands that read the store: a scale (``8`` or ``x8``) or a row level
    without one: ``hr`` (the reference), ``sizes`` (a run over fixed LR sizes), ``given`` (a
    folder scored by ``fhbench score``)."""

    name = "SCALE|hr|sizes|given"

    def convert(self, value, param, ctx):
        text = str(value).strip()
        digits = text[1:] if text[:1] == "x" else text
        if digits.isdigit():
            if int(digits) < 2:
                self.fail(f"{text} is not a scale (>= 2); the reference row is 'hr', runs over fixed LR sizes "
                          "are 'sizes'", param, ctx)
            return int(digits)  # an integer scale, as the sample grids need
        if text in ("hr", "sizes", "given"):
            return text
        self.fail(f"{text!r}: expected a scale such as 8 or x8, or hr, sizes or given", param, ctx)


STORED_LEVEL = StoredLevel()


@click.group(cls=_Group)
@click.version_option(package_name="fhbench")
def main():
    """fhbench: task-based evaluation of face super-resolution."""
    from benchmark.engine.allocator import keep_large_buffers

    keep_large_buffers()  # chunk-sized CPU buffers reused, not mapped afresh (FHBENCH_MALLOC=default: off)


# how an ONNX evaluator runs: the one option run, sweep and score share (its choices are
# OnnxEvaluator.backends, written out to keep the CLI's import light; a test checks they agree)
backend_option = click.option(
    "--backend", type=click.Choice(["onnxruntime", "torch", "onnxruntime-fast", "auto"]), default=None,
    help="how an ONNX evaluator (sface, arcface-mbf) runs: onnxruntime on the CPU (the default, behind every "
         "published figure), converted to torch on --device, or onnxruntime-fast (PReLU as depthwise "
         "convolutions: about 1.6x faster on x86 CPUs, embeddings within ~1e-7); recorded in the manifest")


@main.command()
@click.option("--model", required=True,
              help="registered name, pkg.module:build, *.pt (TorchScript), *.onnx, or a folder of SR images")
@click.option("--protocol", required=True,
              help="protocol name (see `fhbench protocols`), or 'all': every protocol whose data is present")
@click.option("--scale", type=click.IntRange(min=1), default=None, help="degradation scale (default: the protocol's)")
@click.option("--evaluator", default="sface", show_default=True, help="face-recognition model for the task metrics")
@click.option("--data-root", default=DEFAULT_DATA, show_default=True, help="dataset folder ($FHBENCH_DATA)")
@click.option("--store", default=DEFAULT_STORE, show_default=True, help="SQLite results file ($FHBENCH_STORE)")
@click.option("--weights", default=None, help="SR model weights (for registered models)")
@click.option("--evaluator-weights", default=None, help="face-recognition weights file")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="images per SR model call")
@click.option("--cache-dir", default=None, help="per-image result cache (default ~/.cache/fhbench; '' disables)")
@click.option("--no-cache", is_flag=True, help="compute everything, read and write no per-image cache")
@click.option("--clamp/--no-clamp", default=False, help="clamp model output to [0, 1] instead of refusing it")
@click.option("--upsampled-input", is_flag=True, help="feed user models the LR bicubic-upsampled to HR size")
@click.option("--name", default=None, help="model name in the leaderboard (default: the model's)")
@click.option("--replace", is_flag=True, help="replace a stored row of the same name that holds another model")
@click.option("--device", default="cpu", show_default=True)
@backend_option
@click.option("--cluster", default=None, metavar="SPEC",
              help="compute on Dask: local:N (N worker processes), tcp://HOST:PORT (a running scheduler) or "
                   "jobqueue:FILE.yaml (Slurm, PBS, SGE, LSF ...); see README 'Running on a cluster'")
@click.option("--ship-data", is_flag=True, help="with --cluster: send the image bytes to the workers "
              "(small sets, at most 256 MiB) instead of reading the data root there")
@click.option("--precision", default="fp32", show_default=True,
              help="fp32, fp16 or bf16: autocast of the SR model and of a torch evaluator (--backend torch); "
                   "recorded in the manifest and, where not fp32, in the cache keys")
@click.option("--harness", default="auto", show_default=True,
              help="torch: degradation, upsampling, PSNR/SSIM and the evaluator's crop as batched torch ops on "
                   "--device; numpy: the serial NumPy reference path (the same numbers); auto: torch on CUDA "
                   "or with --precision fp16/bf16, numpy otherwise")
@click.option("--quiet", is_flag=True, help="no progress bars")
def run(model, protocol, scale, evaluator, data_root, store, weights, evaluator_weights, batch_size,
        cache_dir, no_cache, clamp, upsampled_input, name, replace, device, backend, cluster, ship_data, precision,
        harness, quiet):
    """Run one model on one protocol (or all) and store the result."""
    from benchmark.engine.runner import RunOptions, run_all
    from benchmark.engine.runner import run as run_protocol

    if no_cache and cache_dir:
        raise click.UsageError("--no-cache and --cache-dir exclude each other")
    opts = RunOptions(
        model=model, protocol=protocol, scale=scale, evaluator=evaluator, data_root=data_root,
        store=store, weights=weights, evaluator_weights=evaluator_weights, batch_size=batch_size,
        cache_dir="" if no_cache else cache_dir, clamp=clamp, upsampled_input=upsampled_input, device=device,
        progress=not quiet, name=name, replace=replace, cluster=cluster, ship_data=ship_data, backend=backend,
        precision=precision, harness=harness)
    if protocol != "all":
        _print_result(run_protocol(opts), store)
        return
    done = run_all(opts, on_result=lambda result: _print_result(result, store))
    for skipped, why in done.skipped.items():
        click.echo(f"skipped {skipped}: {why}")
    for failed, why in done.failed.items():
        click.echo(f"failed {failed}: {why}", err=True)
    click.echo(f"ran {len(done.results)} protocol(s), skipped {len(done.skipped)}, failed {len(done.failed)}")
    if done.failed:
        raise FhbenchError(f"{len(done.failed)} protocol(s) failed on bad data: {', '.join(done.failed)}")
    if not done.results:
        raise FhbenchError(f"no protocol could run with the data under {data_root}")


@main.command()
@click.argument("sweep_file", metavar="SWEEP.yaml")
@click.option("--data-root", default=DEFAULT_DATA, show_default=True, help="dataset folder ($FHBENCH_DATA)")
@click.option("--store", default=DEFAULT_STORE, show_default=True, help="SQLite results file ($FHBENCH_STORE)")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--cache-dir", default=None, help="per-image result cache (default ~/.cache/fhbench)")
@click.option("--device", default="cpu", show_default=True)
@backend_option
@click.option("--cluster", default=None, metavar="SPEC", help="local:N | tcp://HOST:PORT | jobqueue:FILE.yaml: "
              "independent cells run at the same time on its workers")
@click.option("--ship-data", is_flag=True, help="with --cluster: send the image bytes to the workers")
@click.option("--quiet", is_flag=True, help="no progress bars")
def sweep(sweep_file, data_root, store, batch_size, cache_dir, device, backend, cluster, ship_data, quiet):
    """Run a grid of models x protocols x scales x evaluators; skip stored cells."""
    import contextlib

    from benchmark.engine.runner import RunOptions
    from benchmark.engine.sweep import load_sweep, run_sweep, summary_table

    cells = load_sweep(sweep_file)
    base = RunOptions(model="", protocol="", data_root=data_root, store=store, batch_size=batch_size,
                      cache_dir=cache_dir, device=device, backend=backend, progress=not quiet, ship_data=ship_data)
    with contextlib.ExitStack() as stack:
        client = None
        if cluster:
            from benchmark.engine.cluster import connect, parse_cluster

            client = stack.enter_context(connect(parse_cluster(cluster), gpu=device.startswith("cuda")))
        elif ship_data:
            raise FhbenchError("--ship-data needs --cluster")
        run_sweep(cells, base, client=client, progress=not quiet,
                  on_cell=lambda c: click.echo(f"{c.status} {c.label}" + (f": {c.detail}" if c.status == "failed" else ""),
                                               err=c.status == "failed"))
    click.echo(summary_table(cells))
    failed = [c for c in cells if c.status == "failed"]
    if failed:
        click.echo(f"fhbench: error: {len(failed)} of {len(cells)} sweep cells failed", err=True)
        sys.exit(1)


def _print_result(result, store):
    from benchmark.engine.query import describe_level
    from benchmark.contracts.metric import known_metric, metric_spec

    click.echo(f"{result['model']} on {result['protocol']} ({describe_level(result['level'])}, "
               f"evaluator {result['evaluator']}):")
    for key, value in result["metrics"].items():
        # a std is shown in the units of its mean (accuracy_std in % like accuracy); counts
        # such as psnr_n_inf are not metrics of their own
        spec = metric_spec(key) if known_metric(key) else None
        factor, digits = (spec.factor, spec.digits) if spec else (1, 4)
        click.echo(f"  {key:>16}: {value * factor:.{digits}f}" if isinstance(value, float) else f"  {key:>16}: {value}")
    click.echo(f"stored as run {result['id']} in {store}")


@main.command()
@click.option("--protocol", default=None, help="only this protocol")
@click.option("--scale", type=STORED_LEVEL, default=None,
              help="only this scale (8 or x8), or the rows of one kind: hr, sizes (fixed LR sizes), given "
                   "(folders scored by `fhbench score`)")
@click.option("--evaluator", default=None, help="only this evaluator")
@click.option("--format", "fmt", type=click.Choice(["md", "csv", "latex", "json", "html"]), default="md",
              show_default=True)
@click.option("--write", "write_dir", default=None, metavar="DIR",
              help="write <protocol>.md, <protocol>.csv and the runs' manifests into DIR (e.g. results/) "
                   "instead of printing")
@click.option("--store", default=DEFAULT_STORE, show_default=True)
def leaderboard(protocol, scale, evaluator, fmt, write_dir, store):
    """Ranked tables of the stored runs, one per protocol, scale and evaluator."""
    from benchmark.reporting.leaderboard import build_tables, format_tables, write_results

    results = _open_store(store)
    tables = build_tables(results, protocol, scale, evaluator)
    if write_dir:
        for path in write_results(tables, write_dir, results):
            click.echo(f"wrote {path}")
    else:
        click.echo(format_tables(tables, fmt), nl=False)


def _open_store(path):
    """An existing results store (a missing one is an error, not a new empty file)."""
    from pathlib import Path

    from benchmark.engine.store import ResultStore

    if not Path(path).exists():
        raise FhbenchError(f"no results store at {path}; run `fhbench run` first or pass --store")
    return ResultStore(path)


def _print_entries(entries, detail=None):
    for e in entries:
        why = e.why_unavailable()
        state = "ok " if why is None else "n/a"
        click.echo(f"{state} {e.name:<18} {e.summary}")
        if detail:
            click.echo(f"    {detail(e)}")
        if why:
            click.echo(f"    {why}")


@main.command()
def models():
    """Registered SR models (other kinds: pkg.mod:build, *.pt, *.onnx, a folder)."""
    from benchmark.registry import MODELS

    _print_entries(MODELS.entries())
    click.echo("also: --model pkg.module:build | file.pt (TorchScript) | file.onnx | folder/ of SR images")


@main.command()
def evaluators():
    """Face-recognition evaluators, and why any cannot run here."""
    from benchmark.registry import EVALUATORS

    def detail(e):  # the weights' terms travel with the numbers they produce; then where it runs
        where = getattr(e.obj, "where_it_runs", None)
        lines = [f"licence: {getattr(e.obj, 'licence', '') or 'not stated'}"] + ([where()] if where else [])
        return "\n    ".join(lines)

    _print_entries(EVALUATORS.entries(), detail)


@main.command()
def protocols():
    """Protocols (one YAML file each in protocols/)."""
    from benchmark.engine.protocols import list_protocols, load_protocol

    for name in list_protocols():
        p = load_protocol(name)
        levels = f"LR sizes {', '.join(p.level_names)}" if p.lr_sizes else f"scales {p.scales}"
        click.echo(f"{name:<16} {p.summary} [dataset {p.dataset}, {levels}]")


@main.command()
@click.option("--data-root", default=DEFAULT_DATA, show_default=True,
              help="folder holding lfw/, celeba/, ar/, scface/ ($FHBENCH_DATA)")
@click.option("--fetch", type=click.Choice(["lfw"]), default=None,
              help="first download LFW into DATA_ROOT/lfw (needs network; CelebA, AR and SCface need "
                   "your licence and are never fetched)")
def datasets(data_root, fetch):
    """Dataset readers: what --data-root holds for each, what is missing, where to get it."""
    from benchmark.faces.survey import survey_datasets

    if fetch:
        from benchmark.faces.fetch import fetch_lfw

        click.echo(f"LFW is in {fetch_lfw(data_root, log=click.echo)}")
    for s in survey_datasets(data_root):
        click.echo(f"{'ok ' if s.ready else 'n/a'} {s.name:<10} {s.summary}")
        inv = s.inventory
        for item in inv.found if inv else []:
            click.echo(f"    found:   {item}")
        for item in inv.missing if inv else []:
            click.echo(f"    missing: {item}")
        if s.problem:
            click.echo(f"    problem: {s.problem}")
        if not s.ready and inv and inv.how_to_get and inv.how_to_get not in (s.problem or ""):
            click.echo(f"    get it:  {inv.how_to_get}")


def _names(text):
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


@main.command()
@click.argument("kind", type=click.Choice(["cmc", "roc", "csd", "vr", "dir", "scale", "samples"]))
@click.option("--protocol", required=True)
@click.option("--scale", type=STORED_LEVEL, default=None,
              help="the runs' scale, 8 or x8 (needed when several are stored), or hr, sizes, given")
@click.option("--level", default=None, help="LR size, e.g. 16x14: needed for protocols with fixed LR sizes "
              "(lfw-ident, ar-cmc), whose one run covers every size")
@click.option("--evaluator", default=None, help="the runs' evaluator (needed when several are stored)")
@click.option("--models", default=None, help="comma-separated model names (samples: --model specs; "
              "default: every stored run)")
@click.option("--upsampled-input", is_flag=True, help="samples: feed the --models given as callables or files "
              "the LR bicubic-upsampled to HR size")
@click.option("--metric", default=None, help="csd: psnr or ssim; scale: a stored metric (default: the primary)")
@click.option("--log-far", is_flag=True, help="roc: FAR on a log scale")
@click.option("--no-title", is_flag=True, help="leave the title to the paper's caption")
@click.option("--images", default=None, help="samples: comma-separated image indices or relative paths")
@click.option("--data-root", default=DEFAULT_DATA, show_default=True, help="samples: dataset folder")
@click.option("--weights", multiple=True, metavar="MODEL=FILE", help="samples: weights of a registered model")
@click.option("--store", default=DEFAULT_STORE, show_default=True)
@click.option("-o", "--output", required=True, help="figure file: .pdf, .png or .svg")
def plot(kind, protocol, scale, level, evaluator, models, upsampled_input, metric, log_far, no_title, images,
         data_root, weights, store, output):
    """Paper figures: CMC, ROC, CSD, BLUFR VR/DIR, metric vs scale (or vs LR size), sample grids."""
    from benchmark.reporting.plots import check_output, draw, plot_sample_grid, save_figure

    check_output(output)
    if kind == "samples":
        from benchmark.reporting.samples import ModelSpec, parse_weights, render_samples, stored_models

        specs = ({n: ModelSpec(n, upsampled_input) for n in _names(models) or []}
                 or stored_models(_open_store(store), protocol, scale, evaluator))
        fig = plot_sample_grid(render_samples(protocol, specs, _names(images), scale, data_root,
                                              parse_weights(weights), level=level))
    else:
        fig = draw(kind, _open_store(store), protocol, scale, evaluator, _names(models), metric, log_far,
                   title=not no_title, level=level)
    click.echo(f"wrote {save_figure(fig, output)}")


@main.command()
@click.argument("model_a")
@click.argument("model_b")
@click.option("--protocol", required=True)
@click.option("--scale", type=STORED_LEVEL, default=None, help="the runs' scale, 8 or x8, or hr, sizes, given")
@click.option("--level", default=None, help="LR size, e.g. 16x14 (protocols with fixed LR sizes)")
@click.option("--evaluator", default=None)
@click.option("--resamples", type=click.IntRange(min=1), default=10_000, show_default=True, help="bootstrap resamples")
@click.option("--seed", type=int, default=0, show_default=True, help="bootstrap seed")
@click.option("--confidence", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.95,
              show_default=True)
@click.option("--folds", default=None, metavar="6-10",
              help="only the pairs of these folds (numbered from 1; e.g. 6-10 or 1,3,5-7): folds whose people "
                   "the models never trained on; per-image metrics are then left out")
@click.option("--replicate", "replicates", nargs=2, multiple=True, metavar="A_i B_i",
              help="another pair of rows trained alike but for the seed (repeatable): adds, per metric, the mean "
                   "B - A over all pairs with its Student t interval and paired t test")
@click.option("--format", "fmt", type=click.Choice(["text", "md", "json"]), default="text", show_default=True)
@click.option("--store", default=DEFAULT_STORE, show_default=True)
def compare(model_a, model_b, protocol, scale, level, evaluator, resamples, seed, confidence, folds, replicates,
            fmt, store):
    """Is B better than A? McNemar on pair decisions, paired bootstrap CIs of B - A; with
    --replicate (seeds), also the mean B - A over the pairs, its t interval and a paired t test."""
    from benchmark.reporting.compare import compare_models, format_comparison, parse_folds

    selected = None if folds is None else parse_folds(folds)  # a malformed list fails before the store opens
    options = dict(level=level, n_resamples=resamples, seed=seed, confidence=confidence, folds=selected)
    if replicates:
        from benchmark.reporting.compare_replicates import compare_replicates, format_replicates

        result = compare_replicates(_open_store(store), protocol, [(model_a, model_b), *replicates], scale,
                                    evaluator, **options)
        click.echo(format_replicates(result, fmt), nl=False)
        return
    result = compare_models(_open_store(store), protocol, model_a, model_b, scale, evaluator, **options)
    click.echo(format_comparison(result, fmt), nl=False)


@main.command()
@click.option("-o", "--output", required=True, help="the report file (.html)")
@click.option("--data-root", default=None, help="dataset folder: adds sample grids (LR | models | HR)")
@click.option("--images", default=None, help="sample images: comma-separated indices or relative paths")
@click.option("--title", default="fhbench report", show_default=True)
@click.option("--weights", multiple=True, metavar="ROW=FILE",
              help="weights of a trained model's leaderboard row, for its sample grids")
@click.option("--store", default=DEFAULT_STORE, show_default=True)
def report(output, data_root, images, title, weights, store):
    """One self-contained HTML file: leaderboards, figures, samples, manifests."""
    from benchmark.reporting.report import build_report
    from benchmark.reporting.samples import parse_weights

    path = build_report(_open_store(store), output, data_root, _names(images), title, parse_weights(weights))
    click.echo(f"wrote {path}")


@main.command()
@click.argument("name")
@click.option("--config", "config_path", required=True, metavar="FILE",
              help="training config (YAML), e.g. baselines/configs/NAME.yaml")
@click.option("--data-root", default=DEFAULT_DATA, show_default=True,
              help="aligned faces: an LFW root, <identity>/<image>, or a flat folder ($FHBENCH_DATA)")
@click.option("--out", "out_dir", default="runs", show_default=True,
              help="output folder: OUT/NAME/ gets checkpoints, scalars.jsonl and NAME-x<scale>.pt")
@click.option("--max-steps", type=click.IntRange(min=1), default=None,
              help="stop after this many steps in all (resume later)")
@click.option("--scale", type=click.IntRange(min=1), default=None, help="override the config's data.scale")
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="override the config's seed (seed replicates of one config; a resume keeps its seed)")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA when available)")
@click.option("--nproc", type=int, default=None, metavar="N",
              help="data-parallel on N processes of this machine (one per GPU): runs torchrun --standalone "
                   "--nproc_per_node=N; the config's batch_size is the global batch")
def train(name, config_path, data_root, out_dir, max_steps, scale, seed, device, nproc):
    """Train a reference model (resumes from OUT/NAME/last.pt when it exists).

    Under torchrun (torchrun --nproc_per_node=N -m benchmark.cli train ...) each process trains on
    its share of every batch; rank 0 writes the checkpoints and the log."""
    from benchmark.registry import TRAINERS

    train_model = TRAINERS.get(name)
    if nproc is not None:
        from benchmark.training.launch import check_nproc, exec_torchrun

        check_nproc(name, nproc, config_path, device)
        if nproc > 1:
            args = [name, "--config", str(config_path), "--data-root", str(data_root), "--out", str(out_dir)]
            for option, value in (("--max-steps", max_steps), ("--scale", scale), ("--seed", seed),
                                  ("--device", device)):
                if value is not None:
                    args += [option, str(value)]
            exec_torchrun(nproc, args)
    try:
        result = train_model(config_path, data_root, out_dir, device=device, max_steps=max_steps, scale=scale,
                             seed=seed)
    except KeyboardInterrupt:  # the engine-wide message is about the results store
        click.echo(f"fhbench: interrupted; run the same command again to resume from the last checkpoint "
                   f"in {out_dir}/{name}/", err=True)
        sys.exit(130)
    if os.environ.get("RANK", "0") != "0":  # under torchrun: rank 0 reports
        return
    state = "complete" if result.complete else "stopped early: run the same command again to resume"
    click.echo(f"{name}: step {result.step} of {result.total_steps} ({state})")
    click.echo(f"  weights: {result.weights}  (fhbench run --model {name} --weights {result.weights} ...)")
    click.echo(f"  checkpoint: {result.checkpoint}")
    click.echo(f"  log: {result.log}")


@main.command()
@click.option("--protocol", required=True, help="protocol name (see `fhbench protocols`)")
@click.option("--scale", type=click.IntRange(min=1), default=None, help="degradation scale (default: the "
              "protocol's); a protocol with fixed LR sizes takes none and writes every size, one subfolder each")
@click.option("--out", "out_dir", required=True, metavar="DIR",
              help="folder for the LR PNG files (the dataset's layout; <h>x<w>/ per LR size) and fhbench-degrade.json")
@click.option("--overwrite", is_flag=True, help="replace DIR when it is not empty")
@click.option("--data-root", default=DEFAULT_DATA, show_default=True, help="dataset folder ($FHBENCH_DATA)")
@click.option("--cache-dir", default=None, help="alignment cache (default ~/.cache/fhbench; '' disables)")
def degrade(protocol, scale, out_dir, overwrite, data_root, cache_dir):
    """Write a protocol's LR inputs as PNG files, to run a model anywhere (then `fhbench score`)."""
    from benchmark.engine.exchange import write_degraded

    res = write_degraded(protocol, out_dir, scale, data_root, overwrite=overwrite, cache_dir=cache_dir)
    click.echo(f"wrote {res.n_images} LR image(s) into {res.out}; manifest {res.manifest}")


@main.command()
@click.option("--sr", "sr_dir", required=True, metavar="DIR",
              help="SR images: with --protocol laid out like the dataset (<relpath>.png at the protocol's HR "
                   "size); with --hr paired with the HR folder by relative path (suffix aside)")
@click.option("--hr", "hr_dir", default=None, metavar="DIR",
              help="free-form: the ground-truth folder (instead of --protocol); see README 'Scoring any folder'")
@click.option("--protocol", default=None, help="protocol name (see `fhbench protocols`); or use --hr")
@click.option("--scale", type=click.IntRange(min=1), default=None, help="protocol mode: degradation scale "
              "(default: the protocol's; protocols with fixed LR sizes take none)")
@click.option("--degraded", "degraded_dir", default=None, metavar="DIR",
              help="protocol mode: the folder `fhbench degrade` wrote: its manifest is checked against the protocol")
@click.option("--evaluator", "evaluators", multiple=True, default=("sface",), show_default=True,
              help="face-recognition model (free-form: repeat for several, one row each)")
@click.option("--metrics", default=None, help="free-form: comma-separated metrics (default: psnr, ssim, fr_loss, "
              "ids, idd, idd_rad, and rank1, auc, eer with --labels; opt-in: lmd_dlib68, nme_dlib68, lmd_2d106, nme_2d106)")
@click.option("--labels", default=None, metavar="FILE",
              help="free-form: '<relative path> <identity>' per line: adds rank-1 and verification on the SR faces")
@click.option("--aligned", is_flag=False, flag_value="ffhq", default=None,
              type=click.Choice(["ffhq", "sphereface-112x96"]),
              help="free-form: the faces are pre-aligned (bare flag: FFHQ-style, facexlib's 512x512 template; "
                   "sphereface-112x96: fhbench's frame); default: detect and align with MTCNN")
@click.option("--allow-missing", is_flag=True, help="free-form: score the HR images that have an SR image and "
              "count the rest (stated beside every mean) instead of refusing")
@click.option("--convention", default="fhbench", show_default=True,
              type=click.Choice(["fhbench", "basicsr", "pyiqa"]), help="free-form: PSNR/SSIM convention")
@click.option("--crop-border", type=click.IntRange(min=0), default=0, show_default=True,
              help="free-form: pixels cut from each side before PSNR/SSIM")
@click.option("--set", "set_name", default=None, help="free-form: the set's name, stored as protocol folder:<set> "
              "(default: the HR folder's name)")
@click.option("--out", "out_dir", default=None, metavar="DIR",
              help="free-form: pairs.json, per_image.csv, summary.json (default results/score/<set>/<name>)")
@click.option("--data-root", default=DEFAULT_DATA, show_default=True, help="dataset folder ($FHBENCH_DATA)")
@click.option("--store", default=DEFAULT_STORE, show_default=True, help="SQLite results file ($FHBENCH_STORE)")
@click.option("--name", default=None, help="model name in the leaderboard (default: the SR folder's name)")
@click.option("--replace", is_flag=True, help="replace a stored row of the same name that holds another model")
@click.option("--cache-dir", default=None, help="per-image result / alignment cache (default ~/.cache/fhbench; "
              "'' disables)")
@click.option("--device", default="cpu", show_default=True)
@backend_option
@click.option("--quiet", is_flag=True, help="no progress bars")
def score(sr_dir, hr_dir, protocol, scale, degraded_dir, evaluators, metrics, labels, aligned, allow_missing,
          convention, crop_border, set_name, out_dir, data_root, store, name, replace, cache_dir, device, backend,
          quiet):
    """Score a folder of SR outputs (on a protocol, or against a folder of HR images) and store it."""
    if (hr_dir is None) == (protocol is None):
        raise click.UsageError("give --protocol P (a protocol's SR folder) or --hr DIR (any folder), not both")
    if protocol is not None:
        free_only = {"--metrics": metrics, "--labels": labels, "--aligned": aligned, "--allow-missing": allow_missing,
                     "--convention": convention != "fhbench", "--crop-border": crop_border, "--set": set_name,
                     "--out": out_dir}
        used = [k for k, v in free_only.items() if v]
        if used or len(evaluators) != 1:
            raise click.UsageError(f"{', '.join(used) or 'several --evaluator'} apply only with --hr DIR")
        from benchmark.engine.exchange import score_folder

        _print_result(score_folder(sr_dir, protocol, scale, degraded_dir, evaluators[0], data_root, store, name,
                                   replace, cache_dir, progress=not quiet, backend=backend), store)
        return
    if scale is not None or degraded_dir is not None:
        raise click.UsageError("--scale and --degraded apply only with --protocol")
    from benchmark.engine.folder_score import ScoreOptions, score_folders

    opts = ScoreOptions(sr_dir, hr_dir, evaluators, _names(metrics), labels, aligned, allow_missing, convention,
                        crop_border, name, set_name, store, out_dir, replace, device, backend, cache_dir, not quiet)
    results = score_folders(opts)
    for result in results:
        _print_result(result, store)
    conv = results[0]["manifest"]["conventions"]
    click.echo(f"conventions: PSNR/SSIM {conv['psnr_ssim']['name']} (crop border {crop_border}); "
               f"alignment: {conv['alignment']}")
    if conv["n_missing"]:
        click.echo(f"{conv['n_missing']} of {conv['n_hr']} HR images have no SR file: every mean above is over the "
                   f"other {conv['n_hr'] - conv['n_missing']}")
    click.echo(f"wrote {results[0]['manifest']['outputs']} (pairs.json, per_image.csv, summary.json)")


if __name__ == "__main__":
    main()
