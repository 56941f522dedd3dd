"""Paper-ready figures from the results store: CMC, ROC, BLUFR VR-FAR and DIR-FAR, cumulative
score distributions of PSNR and SSIM, metric vs scale, and sample grids.

Style: a two-column paper. Figures are 3.5 in wide (one column; sample grids with many
columns 7.16 in, the full text width) with 8 pt text, laid out with matplotlib's
constrained layout rather than ``bbox_inches="tight"``, so the saved width is exactly the
column width and the fonts stay 8 pt when LaTeX includes the figure at ``\\columnwidth``.
Text stays text: TrueType fonts in PDF (fonttype 42), <text> elements in SVG. PNGs are
300 dpi. The format follows the output suffix (.pdf, .png, .svg).

Colours are stable per model across figures: ``hr`` is black dashed (upper bound),
``bicubic`` grey dotted (lower bound), the project's baselines have fixed (colour, line style)
slots, and any other model takes the free slot chosen by a stable hash (SHA-1) of its name.
Two models of one store never share a style (while the 31 free slots last): a name whose
slot an earlier name (in sorted order) holds takes the next free one. Every figure drawn
from one store therefore shows a model in the same style, whichever runs it shows.

Every figure shows the runs of one protocol, one scale and one evaluator (the hr run,
stored at scale 1, joins every scale); for a protocol with fixed LR sizes (``lr_sizes``: one
run covers every size) also one level, whose arrays are read as ``<name>@<level>``
(``levels.py``), and the metric-vs-scale figure becomes metric vs LR size. Curves are read from the run's stored arrays by
name; a protocol whose runs lack them, a protocol with no runs, or an ambiguous scale or
evaluator is a FhbenchError that says what to pass: never an empty figure. Figures are
``matplotlib.figure.Figure`` objects (rendered by Agg; no pyplot, no GUI backend).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator, PercentFormatter

from benchmark.errors import FhbenchError
from benchmark.engine.levels import arrays_at_level, level_label, resolve_level, split_level
from benchmark.contracts.metric_keys import at_level
from benchmark.reporting.leaderboard import HR_MODEL, LR_MODEL
from benchmark.contracts.metric import metric_spec, metrics_per_item
from benchmark.metrics.verification import roc_curve_exact
from benchmark.engine.protocols import load_protocol
from benchmark.engine.store import ResultStore, RunRecord
from benchmark.engine.query import describe_level, protocol_runs, select_view

COLUMN_WIDTH = 3.5       # inches: one column of a two-column paper (IEEE, CVPR)
TEXT_WIDTH = 7.16        # inches: both columns (figure*)
FIGURE_HEIGHT = 2.6
PNG_DPI = 300
FORMATS = (".pdf", ".png", ".svg")
STYLE = {
    "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7,
    "xtick.labelsize": 7, "ytick.labelsize": 7, "font.family": "DejaVu Sans",
    "lines.linewidth": 1.0, "axes.linewidth": 0.6, "grid.linewidth": 0.4, "grid.alpha": 0.5,
    "axes.grid": True, "legend.frameon": False, "pdf.fonttype": 42, "ps.fonttype": 42,
    "svg.fonttype": "none", "savefig.dpi": PNG_DPI, "figure.dpi": 100,
}
# tab10 without its grey, which is the bicubic row's.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")
LINESTYLES = ("-", "--", "-.", ":")
REFERENCE_STYLES = {HR_MODEL: {"color": "black", "linestyle": (0, (4, 2))},
                    LR_MODEL: {"color": "#7f7f7f", "linestyle": (0, (1, 1.5))}}
# The project's own models (baselines/) never share a style.
FIXED_SLOTS = {"srresnet": 0, "srresnet-fr": 1, "csrip": 2, "ipunet": 3, "cface": 4}
LABELS = {HR_MODEL: "HR (no degradation)", LR_MODEL: "Bicubic (no SR)"}

NEEDS = {
    "cmc": ("CMC", "CMC plots need an identification protocol such as celeba-knn"),
    "roc": ("pair scores", "ROC plots need a pair-verification protocol such as lfw-10fold"),
    "vr": ("BLUFR VR-FAR curve", "VR-FAR plots need a BLUFR protocol such as lfw-blufr"),
    "dir": ("BLUFR DIR-FAR curve", "DIR-FAR plots need a BLUFR protocol such as lfw-blufr"),
    "csd": ("per-image scores", "CSD plots need runs that store per-image PSNR and SSIM"),
}


# Slots the baselines do not hold, for every other model (a slot: colour i % 9, line style i // 9).
FREE_SLOTS = tuple(s for s in range(len(PALETTE) * len(LINESTYLES)) if s not in FIXED_SLOTS.values())


def _slot_style(slot: int) -> Dict:
    return {"color": PALETTE[slot % len(PALETTE)], "linestyle": LINESTYLES[slot // len(PALETTE)]}


def _hashed_index(name: str) -> int:
    # SHA-1, not hash(): the same in every process (hash() of a str is salted per process).
    return int.from_bytes(hashlib.sha1(name.encode()).digest()[:8], "big") % len(FREE_SLOTS)


def model_style(name: str) -> Dict:
    """Colour and line style of a model on its own (``model_styles`` keeps the models of one
    store apart)."""
    if name in REFERENCE_STYLES:
        return dict(REFERENCE_STYLES[name])
    if name in FIXED_SLOTS:
        return _slot_style(FIXED_SLOTS[name])
    return _slot_style(FREE_SLOTS[_hashed_index(name)])


def model_styles(names) -> Dict[str, Dict]:
    """{name: style} for all ``names`` (the models of a store): ``model_style``, except that a
    model whose hashed slot an earlier name (sorted order) holds takes the next free slot."""
    styles, taken = {}, set()
    for name in sorted(set(names)):
        if name in REFERENCE_STYLES or name in FIXED_SLOTS:
            styles[name] = model_style(name)
            continue
        start = _hashed_index(name)
        order = [(start + k) % len(FREE_SLOTS) for k in range(len(FREE_SLOTS))]
        index = next((i for i in order if i not in taken), start)  # all taken: share the hashed one
        taken.add(index)
        styles[name] = _slot_style(FREE_SLOTS[index])
    return styles


def model_label(name: str) -> str:
    return LABELS.get(name, name)


@dataclass
class Selection:
    """The runs of one figure: one protocol, row level and evaluator (hr first, bicubic last),
    and the LR size shown of an ``lr_sizes`` protocol (``level``; None otherwise)."""

    protocol: str
    row_level: Optional[str]  # x8, sizes, hr; None: every scale (metric vs scale)
    evaluator: str
    runs: List[RunRecord]
    level: Optional[str] = None
    styles: Dict[str, Dict] = field(default_factory=dict)  # model_styles of every model in the store

    def style(self, name: str) -> Dict:
        return dict(self.styles.get(name) or model_style(name))


def select_runs(store: ResultStore, protocol: str, scale: Optional[int] = None, evaluator: Optional[str] = None,
                models: Optional[Sequence[str]] = None, all_scales: bool = False,
                level: Optional[str] = None) -> Selection:
    """Runs of ``protocol`` for one figure (``engine/query.select_view``): ``scale`` and
    ``evaluator`` may be left out when the store holds only one; ``all_scales`` keeps every
    scale (metric vs scale). ``level`` is required for an ``lr_sizes`` protocol (unless
    ``all_scales``) and refused otherwise."""
    protocol_runs(store, protocol)  # no runs at all: say so before asking for a level
    spec = load_protocol(protocol)
    if not all_scales:
        level = resolve_level(spec, level, scale)
    view = select_view(store, protocol, scale, evaluator, models, all_levels=all_scales,
                       lr_sizes=bool(spec.lr_sizes))
    order = {HR_MODEL: 0, LR_MODEL: 2}
    runs = sorted(view.runs, key=lambda r: (order.get(r.model, 1), r.model, r.scale or 0))
    return Selection(protocol, view.level, view.evaluator, runs, level, model_styles(r.model for r in store.runs()))


def _load_arrays(store: ResultStore, sel: Selection, names: Sequence[str], kind: str) -> Dict[int, Dict]:
    """{run id: arrays} of the selection's runs (of its level, under the plain names); every
    run must store ``names``."""
    arrays = {r.id: arrays_at_level(store.arrays(r.id), sel.level) for r in sel.runs}
    stored = [n if sel.level is None else f"{n}@{sel.level}" for n in names]
    lacking = [r.model for r in sel.runs if any(n not in arrays[r.id] for n in names)]
    if len(lacking) == len(sel.runs):
        what, hint = NEEDS[kind]
        raise FhbenchError(f"protocol {sel.protocol} stores no {what} (arrays {', '.join(stored)}); {hint}")
    if lacking:
        raise FhbenchError(f"run(s) of {', '.join(lacking)} on {sel.protocol} store no {', '.join(stored)}: "
                           "re-run them, or leave them out with --models")
    return arrays


def _figure(width: float = COLUMN_WIDTH, height: float = FIGURE_HEIGHT,
            layout: Optional[str] = "constrained") -> Figure:
    with matplotlib.rc_context(STYLE):
        return Figure(figsize=(width, height), layout=layout)


def _title(sel: Selection, what: str) -> str:
    where = level_label(sel.level) if sel.level else describe_level(sel.row_level)
    return f"{what}: {sel.protocol}, {where}, {sel.evaluator}"


def _literal(*texts) -> None:
    """Show text from user data (run, protocol, evaluator, metric names) as typed: a '$' in a
    run name must not start a mathtext formula (which fails to parse, or hides characters)."""
    for text in texts:
        text.set_parse_math(False)
        text.set_usetex(False)


def _shown(artist):
    """Mark a line (or ``ax.plot``'s list, or an error-bar container) for the legend: handles
    are passed explicitly, so a run named ``_x`` is not dropped as matplotlib drops labels
    starting with '_' when it collects them itself."""
    (artist[0] if isinstance(artist, list) else artist)._fhbench_legend = True
    return artist


def _legend(ax, loc: str) -> None:
    handles = [a for a in [*ax.get_children(), *ax.containers] if getattr(a, "_fhbench_legend", False)]
    _literal(*ax.legend(handles, [h.get_label() for h in handles], loc=loc).get_texts())


def _finish(fig: Figure, ax, sel: Selection, what: str, legend_loc: str = "best") -> Figure:
    with matplotlib.rc_context(STYLE):
        _literal(ax.set_title(_title(sel, what)))
        _legend(ax, legend_loc)
    return fig


def plot_cmc(store: ResultStore, protocol: str, scale=None, evaluator=None, models=None,
             array: str = "cmc", max_rank: Optional[int] = None, level: Optional[str] = None) -> Figure:
    """CMC: ``array[r - 1]`` = identification rate at rank r (rows of a 2-D array are
    repeats or trials and are averaged)."""
    sel = select_runs(store, protocol, scale, evaluator, models, level=level)
    arrays = _load_arrays(store, sel, [array], "cmc")
    fig = _figure()
    with matplotlib.rc_context(STYLE):
        ax = fig.add_subplot()
        for r in sel.runs:
            cmc = np.asarray(arrays[r.id][array], dtype=np.float64)
            cmc = cmc.mean(axis=0) if cmc.ndim == 2 else cmc
            cmc = cmc[:max_rank] if max_rank else cmc
            _shown(ax.plot(np.arange(1, len(cmc) + 1), cmc, label=model_label(r.model), **sel.style(r.model)))
        ax.set_xlabel("Rank")
        ax.set_ylabel("Identification rate")
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    return _finish(fig, ax, sel, "CMC", "lower right")


def plot_roc(store: ResultStore, protocol: str, scale=None, evaluator=None, models=None,
             log_far: bool = False, scores: str = "pair_scores", is_same: str = "pair_is_same",
             level: Optional[str] = None) -> Figure:
    """ROC from the stored pair scores: the exact curve (``roc_curve_exact``), TAR against
    FAR. With ``log_far`` the FAR = 0 points are left out (log scale)."""
    sel = select_runs(store, protocol, scale, evaluator, models, level=level)
    arrays = _load_arrays(store, sel, [scores, is_same], "roc")
    fig = _figure()
    with matplotlib.rc_context(STYLE):
        ax = fig.add_subplot()
        smallest = 1.0
        for r in sel.runs:
            far, tar, _ = roc_curve_exact(arrays[r.id][scores], arrays[r.id][is_same])
            if log_far:
                far, tar = far[far > 0], tar[far > 0]
                smallest = min(smallest, far[0])
            _shown(ax.plot(far, tar, label=model_label(r.model), **sel.style(r.model)))
        if log_far:
            ax.set_xscale("log")
            ax.set_xlim(smallest, 1.0)
        ax.set_xlabel("False accept rate")
        ax.set_ylabel("True accept rate")
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    return _finish(fig, ax, sel, "ROC", "lower right")


def plot_blufr(store: ResultStore, protocol: str, kind: str = "vr", scale=None, evaluator=None, models=None,
               far: Optional[str] = None, curve: Optional[str] = None, level: Optional[str] = None) -> Figure:
    """BLUFR VR-FAR (``kind="vr"``) or DIR-FAR at rank 1 (``"dir"``): the mean over trials of
    ``<kind>_curve`` (trials x FARs) against ``<kind>_curve_far``, with a band of +- 1 std
    (ddof=1) over trials."""
    if kind not in ("vr", "dir"):
        raise FhbenchError(f"BLUFR plot kind must be vr or dir, got {kind!r}")
    far, curve = far or f"{kind}_curve_far", curve or f"{kind}_curve"
    sel = select_runs(store, protocol, scale, evaluator, models, level=level)
    arrays = _load_arrays(store, sel, [far, curve], kind)
    fig = _figure()
    with matplotlib.rc_context(STYLE):
        ax = fig.add_subplot()
        for r in sel.runs:
            fars = _one_far_axis(arrays[r.id][far], r, far)
            per_trial = np.atleast_2d(np.asarray(arrays[r.id][curve], dtype=np.float64))
            if per_trial.shape[1] != len(fars):
                raise FhbenchError(f"run of {r.model}: {curve} has {per_trial.shape[1]} columns but {far} "
                                   f"{len(fars)} FARs")
            mean = per_trial.mean(axis=0)
            style = sel.style(r.model)
            _shown(ax.plot(fars, mean, label=model_label(r.model), **style))
            if len(per_trial) > 1:
                std = per_trial.std(axis=0, ddof=1)
                ax.fill_between(fars, mean - std, mean + std, color=style["color"], alpha=0.15, linewidth=0)
        ax.set_xscale("log")
        ax.set_xlabel("False accept rate")
        ax.set_ylabel("Verification rate" if kind == "vr" else "Detection and identification rate")
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    return _finish(fig, ax, sel, "BLUFR VR-FAR" if kind == "vr" else "BLUFR DIR-FAR (rank 1)", "lower right")


def _one_far_axis(values, run: RunRecord, name: str) -> np.ndarray:
    fars = np.asarray(values, dtype=np.float64)
    if fars.ndim == 2:  # one FAR list per trial: they must agree
        if not (fars == fars[0]).all():
            raise FhbenchError(f"run of {run.model}: {name} differs between trials; cannot average the curves")
        fars = fars[0]
    if (fars <= 0).any():
        raise FhbenchError(f"run of {run.model}: {name} holds FARs <= 0, which a log axis cannot show")
    return fars


def cumulative_score_distribution(values, lower_better: bool = False) -> tuple:
    """(x, y): the distinct finite scores ascending and the fraction of all images scoring
    >= each (inf, e.g. PSNR of identical images, counts as above every x); for a metric where
    lower is better, the fraction scoring <= each (the share of images at least that good)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    finite = np.sort(v[np.isfinite(v)])
    x = np.unique(finite)
    if lower_better:
        return x, np.searchsorted(np.sort(v), x, side="right") / len(v)
    return x, (len(v) - np.searchsorted(np.sort(v), x, side="left")) / len(v)


def plot_csd(store: ResultStore, protocol: str, metric: str = "psnr", scale=None, evaluator=None,
             models=None, level: Optional[str] = None) -> Figure:
    """Cumulative score distribution of a per-image metric: the fraction of images with
    ``metric`` >= x (<= x where lower is better), a step at each distinct score. The hr run
    (identical images: PSNR inf, SSIM 1) is left out."""
    per_image = [m.name for m in metrics_per_item("images")]
    if metric not in per_image:
        raise FhbenchError(f"CSD plots show a per-image metric ({', '.join(per_image)}), not {metric!r}")
    spec = metric_spec(metric)
    sel = select_runs(store, protocol, scale, evaluator, models, level=level)
    if not load_protocol(protocol).image_metrics:
        raise FhbenchError(f"protocol {protocol} has no PSNR or SSIM (image_metrics: false: natural LR, no true "
                           "HR), so no CSD plot")
    sel.runs = [r for r in sel.runs if not r.reference]
    if not sel.runs:
        raise FhbenchError(f"no SR runs of {protocol} with {sel.evaluator}: the hr run alone has no score "
                           "distribution (PSNR inf, SSIM 1)")
    arrays = _load_arrays(store, sel, [metric], "csd")
    fig = _figure()
    with matplotlib.rc_context(STYLE):
        ax = fig.add_subplot()
        for r in sel.runs:
            x, y = cumulative_score_distribution(arrays[r.id][metric], spec.lower_better)
            if not len(x):
                raise FhbenchError(f"run of {r.model} on {protocol}: no finite {metric} (identical to HR?); "
                                   "leave it out with --models")
            _shown(ax.plot(x, y, drawstyle="steps-pre", label=model_label(r.model), **sel.style(r.model)))
        _literal(ax.set_xlabel(metric_spec(metric).header))
        ax.set_ylabel(f"Images with {metric.upper()} {'≤' if spec.lower_better else '≥'} x")
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    return _finish(fig, ax, sel, f"CSD of {metric.upper()}", "lower left")


def plot_metric_vs_scale(store: ResultStore, protocol: str, metric: Optional[str] = None, evaluator=None,
                         models=None) -> Figure:
    """One line per model over the scales it was run at (x log2: x2, x4, x8); error bars
    where the protocol lists ``<metric>_std`` (folds, trials); the hr value as a
    horizontal line. A protocol with fixed LR sizes gets ``plot_metric_vs_level``."""
    spec = load_protocol(protocol)
    if spec.lr_sizes:
        return plot_metric_vs_level(store, protocol, metric, evaluator, models)
    metric = metric or spec.primary_metric
    sel = select_runs(store, protocol, None, evaluator, models, all_scales=True)
    if not any(metric in r.metrics for r in sel.runs):
        stored = sorted({k for r in sel.runs for k in r.metrics})
        raise FhbenchError(f"no run of {protocol} stores metric {metric!r} (stored: {', '.join(stored)})")
    sr = [r for r in sel.runs if r.scale is not None and metric in r.metrics]
    if not sr:
        raise FhbenchError(f"only the hr run of {protocol} is stored; metric vs scale needs runs at a scale")
    sr = [r for r in sr if _finite(r.metrics[metric])]
    if not sr:
        raise FhbenchError(f"{metric} is nan or inf in every SR run of {protocol} with {sel.evaluator}: "
                           "nothing to plot")
    with_std = f"{metric}_std" in spec.metrics
    metric_info = metric_spec(metric)
    header, factor = metric_info.header, metric_info.factor
    fig = _figure()
    with matplotlib.rc_context(STYLE):
        ax = fig.add_subplot()
        for name in dict.fromkeys(r.model for r in sr):
            mine = sorted((r for r in sr if r.model == name), key=lambda r: r.scale)
            x = [r.scale for r in mine]
            y = [r.metrics[metric] for r in mine]
            err = [r.metrics.get(f"{metric}_std", 0.0) for r in mine] if with_std else None
            _metric_line(ax, x, y, err, name, sel.style(name))
        for r in sel.runs:
            if r.reference and np.isfinite(r.metrics.get(metric, np.nan)):
                _shown(ax.axhline(r.metrics[metric], label=model_label(r.model), **sel.style(r.model)))
        scales = sorted({r.scale for r in sr})
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(FixedLocator(scales))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([f"×{s}" for s in scales])
        ax.set_xlabel("Scale")
        _metric_axes(ax, header, factor, f"vs scale: {protocol}, {sel.evaluator}")
    return fig


def _metric_line(ax, x, y, err, model: str, style: dict) -> None:
    """One model's metric against scale or LR size; error bars when ``err`` is given."""
    if err is not None:
        _shown(ax.errorbar(x, y, yerr=err, marker="o", markersize=3, capsize=2, label=model_label(model), **style))
    else:
        _shown(ax.plot(x, y, marker="o", markersize=3, label=model_label(model), **style))


def _metric_axes(ax, header: str, factor: float, what: str) -> None:
    """Y label (percentages as %), title '<metric> <what>' and legend of a metric-vs-x figure."""
    _literal(ax.set_ylabel(header))
    if factor == 100:
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_ylabel(header.replace(" (%)", ""))
    _literal(ax.set_title(f"{header.replace(' (%)', '')} {what}"))
    _legend(ax, "best")


def plot_metric_vs_level(store: ResultStore, protocol: str, metric: Optional[str] = None, evaluator=None,
                         models=None) -> Figure:
    """Metric vs LR size for an ``lr_sizes`` protocol: one line per model through ONE run's
    ``<metric>@<level>`` values, x = the protocol's LR sizes in its order (evenly spaced);
    error bars where the run stores ``<metric>@<level>_std`` (repeats). ``metric`` is the
    plain name (``rank1``; ``rank1@16x14`` means the same); default: the primary metric's.
    The hr run (no degradation) is drawn through its own per-level values."""
    spec = load_protocol(protocol)
    if not spec.lr_sizes:
        raise FhbenchError(f"protocol {protocol} has scales, not fixed LR sizes: draw metric vs scale")
    metric = split_level(spec, metric or spec.primary_metric)[0]
    levels = spec.level_names
    sel = select_runs(store, protocol, None, evaluator, models, all_scales=True)
    keys = [at_level(metric, lv) for lv in levels]
    shown = [r for r in sel.runs if any(k in r.metrics for k in keys)]
    if not shown:
        stored = sorted({split_level(spec, k)[0] for r in sel.runs for k in r.metrics} - {"psnr_n_inf"})
        raise FhbenchError(f"no run of {protocol} with {sel.evaluator} stores {metric!r} at any LR size "
                           f"({', '.join(levels)}); metrics stored: {', '.join(stored)}")
    if all(r.reference for r in shown):
        raise FhbenchError(f"only the hr run of {protocol} is stored; metric vs LR size needs an SR run")
    metric_info = metric_spec(metric)
    header, factor = metric_info.header, metric_info.factor
    finite = {r.id: [i for i, k in enumerate(keys) if k in r.metrics and _finite(r.metrics[k])] for r in shown}
    if not any(finite[r.id] for r in shown if not r.reference):
        raise FhbenchError(f"{metric} is nan or inf at every LR size in every SR run of {protocol} with "
                           f"{sel.evaluator}: nothing to plot")
    fig = _figure()
    with matplotlib.rc_context(STYLE):
        ax = fig.add_subplot()
        for r in shown:
            at = finite[r.id]
            if not at:  # e.g. the hr run's PSNR: inf at every size
                continue
            y = [r.metrics[keys[i]] for i in at]
            std = [r.metrics.get(at_level(f"{metric}_std", levels[i])) for i in at]
            _metric_line(ax, at, y, std if all(v is not None for v in std) else None, r.model, sel.style(r.model))
        ax.xaxis.set_major_locator(FixedLocator(range(len(levels))))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([lv.replace("x", "×") for lv in levels])
        ax.set_xlim(-0.3, len(levels) - 0.7)
        ax.set_xlabel("LR size (h × w)")
        _metric_axes(ax, header, factor, f"vs LR size: {protocol}, {sel.evaluator}")
    return fig


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def plot_sample_grid(grid) -> Figure:
    """Rows = images, columns = LR (shown pixelated at HR size) | each model | HR
    (a ``samples.SampleGrid``)."""
    n_rows, n_cols = grid.images.shape[:2]
    h, w = grid.images.shape[-2:]
    width = COLUMN_WIDTH if n_cols <= 5 else TEXT_WIDTH
    cell = width / n_cols
    title_band = 0.2  # inches for the column headers
    fig = _figure(width, n_rows * cell * h / w + title_band, layout=None)
    with matplotlib.rc_context(STYLE):
        fig.subplots_adjust(left=0, right=1, bottom=0, top=1 - title_band / fig.get_figheight(),
                            wspace=0.03, hspace=0.03)
        axes = fig.subplots(n_rows, n_cols, squeeze=False)
        for i in range(n_rows):
            for j in range(n_cols):
                ax = axes[i, j]
                ax.imshow(np.clip(grid.images[i, j].transpose(1, 2, 0), 0, 1), interpolation="nearest")
                ax.set_axis_off()
                if i == 0:
                    _literal(ax.set_title(grid.columns[j], fontsize=7, pad=2))
    return fig


def check_output(path) -> Path:
    """The output path, if its suffix names a format we write."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise FhbenchError(f"output {path}: the suffix must be one of {', '.join(FORMATS)} (it picks the format)")
    return path


def save_figure(fig: Figure, path, dpi: int = PNG_DPI) -> Path:
    """Write ``fig`` in the format of the suffix (PDF, PNG at ``dpi``, SVG)."""
    path = check_output(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context(STYLE):
        fig.savefig(path, dpi=dpi, metadata=_metadata(path))
    return path


def _metadata(path: Path) -> Dict:
    # No creation date: the same figure from the same store gives the same PDF/SVG bytes.
    if path.suffix.lower() == ".pdf":
        return {"CreationDate": None, "Creator": "fhbench"}
    if path.suffix.lower() == ".svg":
        return {"Date": None, "Creator": "fhbench"}
    return {"Software": "fhbench"}


PLOT_KINDS = ("cmc", "roc", "csd", "vr", "dir", "scale", "samples")


def draw(kind: str, store: ResultStore, protocol: str, scale=None, evaluator=None, models=None,
         metric: Optional[str] = None, log_far: bool = False, title: bool = True,
         level: Optional[str] = None) -> Figure:
    """The figure of one store-backed plot kind (every kind but ``samples``; ``scale`` and
    ``level`` do not apply to ``scale``, which draws them all). ``title=False`` leaves the
    title to the paper's caption."""
    if kind == "cmc":
        fig = plot_cmc(store, protocol, scale, evaluator, models, level=level)
    elif kind == "roc":
        fig = plot_roc(store, protocol, scale, evaluator, models, log_far=log_far, level=level)
    elif kind in ("vr", "dir"):
        fig = plot_blufr(store, protocol, kind, scale, evaluator, models, level=level)
    elif kind == "csd":
        fig = plot_csd(store, protocol, metric or "psnr", scale, evaluator, models, level=level)
    elif kind == "scale":
        if scale is not None or level is not None:
            what = "LR size" if load_protocol(protocol).lr_sizes else "scale"
            raise FhbenchError(f"plot scale draws every {what} of {protocol}; leave out --scale and --level")
        fig = plot_metric_vs_scale(store, protocol, metric, evaluator, models)
    else:
        raise FhbenchError(f"unknown plot kind {kind!r} (known: {', '.join(PLOT_KINDS)})")
    if not title:
        for ax in fig.axes:
            ax.set_title("")
    return fig
