"""The static HTML report: one self-contained file that any browser opens without a server.

Per protocol: its leaderboards, every figure its runs can draw (per evaluator and scale,
or per LR size of a protocol with fixed LR sizes: ROC with log FAR, CMC, BLUFR VR-FAR and
DIR-FAR, CSD of PSNR and SSIM; per evaluator: the primary metric and PSNR vs scale or vs
LR size), sample grids when a data root is given (at the default scale, or at the LR size
of the primary metric), and each
run's metrics and manifest in a collapsible <details>. CSS is inline, figures are
embedded as base64 PNG, there is no JavaScript and no external URL. Figures a protocol
cannot draw are listed with the reason, collapsed.
"""
from __future__ import annotations

import base64
import html
import io
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import matplotlib

from benchmark import __version__
from benchmark.engine import strict_json
from benchmark.errors import FhbenchError
from benchmark.engine.query import describe_level, sr_levels
from benchmark.reporting.leaderboard import build_tables, format_tables
from benchmark.engine.levels import level_label, split_level
from benchmark.reporting.plots import STYLE, draw, plot_sample_grid
from benchmark.engine.protocols import load_protocol
from benchmark.reporting.samples import render_samples, stored_models
from benchmark.engine.store import HR_LEVEL, ResultStore

REPORT_DPI = 150
# (kind, options, caption) per evaluator and scale
SCALE_FIGURES = (("roc", {"log_far": True}, "ROC (log FAR)"), ("cmc", {}, "CMC"), ("vr", {}, "BLUFR VR-FAR"),
                 ("dir", {}, "BLUFR DIR-FAR (rank 1)"), ("csd", {"metric": "psnr"}, "CSD of PSNR"),
                 ("csd", {"metric": "ssim"}, "CSD of SSIM"))

CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto;
       max-width: 1100px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 2px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table.leaderboard { border-collapse: collapse; margin: 1em 0; font-variant-numeric: tabular-nums; }
table.leaderboard caption { text-align: left; font-weight: 600; padding: .3em 0; }
table.leaderboard th, table.leaderboard td { border-bottom: 1px solid #ddd; padding: .25em .7em; }
table.leaderboard td { text-align: right; } table.leaderboard th[scope=row] { text-align: left; font-weight: normal; }
table.leaderboard thead th { border-bottom: 2px solid #888; }
tr.reference { color: #555; font-style: italic; background: #f6f6f6; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: .85em; color: #555; }
details { margin: .3em 0; } summary { cursor: pointer; }
pre { background: #f6f6f6; padding: .8em; overflow-x: auto; font-size: .8em; }
.note { color: #7a4; font-size: .9em; } .meta { color: #666; }
"""


def build_report(store: ResultStore, output, data_root=None, images: Optional[Sequence] = None,
                 title: str = "fhbench report", weights: Optional[Dict[str, str]] = None) -> Path:
    """Write the report to ``output`` (.html); return its path. ``weights``: {leaderboard row:
    weights file} for the sample grids of trained models."""
    output = Path(output)
    if output.suffix.lower() not in (".html", ".htm"):
        raise FhbenchError(f"report output {output} must end in .html")
    page = render_report(store, data_root, images, title, weights)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(page, encoding="utf-8")
    return output


def render_report(store: ResultStore, data_root=None, images: Optional[Sequence] = None,
                  title: str = "fhbench report", weights: Optional[Dict[str, str]] = None) -> str:
    runs = store.runs()
    if not runs:
        raise FhbenchError(f"no runs in {store.path}; run `fhbench run --model M --protocol P` first")
    protocols = sorted({r.protocol for r in runs})
    esc = html.escape
    toc = "".join(f'<li><a href="#{_anchor(p)}">{esc(p)}</a></li>' for p in protocols)
    head = (f"<h1>{esc(title)}</h1><p class=\"meta\">{len(runs)} runs from {esc(str(store.path))}; "
            f"fhbench {esc(__version__)}; generated {esc(time.strftime('%Y-%m-%d %H:%M'))}</p><ul>{toc}</ul>")
    body = [head] + [_protocol_section(store, p, data_root, images, weights) for p in protocols]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{esc(title)}</title>"
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _anchor(protocol: str) -> str:
    return "p-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in protocol)


def _protocol_section(store: ResultStore, protocol: str, data_root, images, weights=None) -> str:
    esc = html.escape
    try:
        spec = load_protocol(protocol)
    except FhbenchError as err:  # e.g. its YAML file was removed: still show that its runs exist
        return (f'<section id="{_anchor(protocol)}"><h2>{esc(protocol)}</h2>'
                f'<p class="note">Not shown: {esc(str(err))}</p></section>')
    runs = store.runs(protocol=protocol)
    out = [f'<section id="{_anchor(protocol)}"><h2>{esc(protocol)}</h2><p>{esc(spec.summary)}</p>',
           "<h3>Leaderboards</h3>", format_tables(build_tables(store, protocol=protocol), "html")]
    figures, missing = _figures(store, spec, runs)
    if figures:
        out += ["<h3>Figures</h3>", '<div class="figures">', *figures, "</div>"]
    if missing:
        items = "".join(f"<li>{esc(m)}</li>" for m in missing)
        out.append(f"<details><summary>Figures not drawn ({len(missing)})</summary><ul>{items}</ul></details>")
    if data_root is not None:
        out.append(_samples(store, protocol, spec, data_root, images, runs, weights))
    out.append("<h3>Runs</h3>")
    for r in runs:
        summary = f"{r.model} · {describe_level(r.level)} · {r.evaluator} · {r.created}"
        out.append(f"<details><summary>{esc(summary)}</summary><h4>Metrics</h4><pre>{esc(_json(r.metrics))}</pre>"
                   f"<h4>Manifest</h4><pre>{esc(_json(r.manifest))}</pre></details>")
    out.append("</section>")
    return "\n".join(out)


def _figures(store: ResultStore, spec, runs) -> tuple:
    figures: List[str] = []
    missing: List[str] = []
    protocol = spec.name
    for ev in sorted({r.evaluator for r in runs}):
        if spec.lr_sizes:  # one run holds every LR size: a figure per size
            where = [(None, lv, level_label(lv)) for lv in spec.level_names]
        else:
            levels = sr_levels([r for r in runs if r.evaluator == ev])
            where = [(lv, None, describe_level(lv)) for lv in levels or [HR_LEVEL]]
        for sc, lv, label in where:
            for kind, options, caption in SCALE_FIGURES:
                _try(figures, missing, f"{caption}, {label}, {ev}",
                     lambda: draw(kind, store, protocol, sc, ev, level=lv, **options))
        versus = "LR size" if spec.lr_sizes else "scale"
        for metric in dict.fromkeys((split_level(spec, spec.primary_metric)[0], "psnr")):
            _try(figures, missing, f"{metric} vs {versus}, {ev}",
                 lambda: draw("scale", store, protocol, evaluator=ev, metric=metric))
    return figures, missing


def _try(figures: List[str], missing: List[str], caption: str, make) -> None:
    try:
        fig = make()
    except FhbenchError as err:
        missing.append(f"{caption}: {err}")
        return
    figures.append(_figure_html(fig, caption))


def _figure_html(fig, caption: str) -> str:
    buf = io.BytesIO()
    with matplotlib.rc_context(STYLE):
        fig.savefig(buf, format="png", dpi=REPORT_DPI)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    cap = html.escape(caption)
    return f'<figure><img alt="{cap}" src="data:image/png;base64,{data}"><figcaption>{cap}</figcaption></figure>'


def _samples(store: ResultStore, protocol: str, spec, data_root, images, runs, weights=None) -> str:
    esc = html.escape
    scales = sorted(r.scale for r in runs if r.scale is not None)
    if not sr_levels(runs):
        return ""
    if spec.lr_sizes:  # the primary metric's LR size (else the first)
        scale, level = None, split_level(spec, spec.primary_metric)[1] or spec.level_names[0]
        where = level_label(level)
    else:
        scale = spec.default_scale if spec.default_scale in scales else scales[-1]
        level, where = None, describe_level(f"x{scale}")
    models = stored_models(store, protocol, scale)
    out = [f"<h3>Samples ({esc(where)})</h3>"]
    try:
        grid = render_samples(protocol, models, images, None if level else scale, data_root, weights,
                              skip_unavailable=True, level=level)
    except FhbenchError as err:
        return out[0] + f'<p class="note">No sample grid: {esc(str(err))}</p>'
    out.append(_figure_html(plot_sample_grid(grid), "LR | " + " | ".join(grid.columns[1:-1]) + " | HR: "
                            + ", ".join(grid.keys)))
    out += [f'<p class="note">{esc(label)} not shown: {esc(why)}</p>' for label, why in grid.skipped.items()]
    return "\n".join(out)


def _json(value) -> str:
    # strict JSON (inf/nan as null plus a non_finite map), like the files leaderboard --write writes
    return strict_json.dumps(value, indent=1, default=str, sort_keys=True)
