"""Leaderboards: one ranked table per (protocol, level, evaluator) from the results store.

Rows, top to bottom: the ``hr`` reference (no degradation, the ``reference`` row, shown in
every table of its protocol and evaluator) as the upper bound; the SR models ranked by the
protocol's primary metric (ties keep model-name order); the run named ``bicubic`` (the LR
image upsampled, no SR) as the lower bound. Reference rows are never candidates for
"best"; the best value of each metric among the other rows is marked (bold; ties all
marked). A metric whose ``<metric>_std`` the protocol also lists (a std over folds or
trials) is shown as "mean ± std" and gets no column of its own. A missing reference run
is named under the table with the command that adds it.
Formats: md, csv, latex, json, html; ``write_results`` writes one Markdown and one CSV
file per protocol. The best values are bold in md, latex (``\textbf``) and html
(``<strong>``); csv has a ``best`` column naming the row's best metrics (``;``-separated)
and json a ``best`` list per row and a ``best`` value per metric per table. LaTeX output
uses booktabs rules and escapes LaTeX's special characters.
"""
from __future__ import annotations

import csv
import html
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from benchmark.engine import strict_json
from benchmark.errors import FhbenchError
from benchmark.contracts.metric import metric_spec
from benchmark.engine.names import slug
from benchmark.engine.protocols import load_protocol
from benchmark.engine.query import describe_level, table_views
from benchmark.engine.store import GIVEN_LEVEL, HR_LEVEL, SIZES_LEVEL, ResultStore, level_scale

HR_MODEL = "hr"
LR_MODEL = "bicubic"
HR_LABEL = "hr (no degradation)"
LR_LABEL = "bicubic (no SR)"

@dataclass
class Table:
    protocol: str
    level: str                  # x8, sizes (a protocol's fixed LR sizes) or hr (a table of the hr row alone)
    evaluator: str
    metrics: List[str]          # the columns, in the protocol's order
    primary: str
    rows: List[dict]            # {"model", "reference": bool, "metrics": {...}}
    with_std: List[str] = field(default_factory=list)            # metrics shown as mean ± std
    missing_references: List[str] = field(default_factory=list)  # commands that add them
    hr_sizes: Dict[str, str] = field(default_factory=dict)  # row label -> the HR frame it was scored in
    # row label -> the conventions it was scored with (free-form scores: PSNR/SSIM convention,
    # alignment, evaluator weights, missing files), stated under the table
    conventions: Dict[str, str] = field(default_factory=dict)

    def frame_note(self) -> Optional[str]:
        """A line saying which rows used which HR frame, when they differ (a model scored in its
        native frame, e.g. C-SRIP at 192x192 beside 112x96 rows): PSNR and SSIM then compare
        images of different sizes; and, for free-form scores, each row's conventions."""
        notes = []
        sizes = {v for v in self.hr_sizes.values() if v}
        if len(sizes) >= 2:
            by_size = {size: [m for m, v in self.hr_sizes.items() if v == size] for size in sorted(sizes)}
            notes.append("HR frames differ: " + "; ".join(f"{size}: {', '.join(models)}"
                                                          for size, models in by_size.items()))
        if self.conventions:
            by_text = {text: [m for m, v in self.conventions.items() if v == text]
                       for text in dict.fromkeys(self.conventions.values())}
            notes.append("Scored with: " + " | ".join(f"{', '.join(models)}: {text}" for text, models in by_text.items()))
        return " ".join(notes) or None

    @property
    def scale(self) -> Optional[int]:
        return level_scale(self.level)


def build_tables(store: ResultStore, protocol=None, scale=None, evaluator=None) -> List[Table]:
    """Tables of the stored runs, filtered by protocol, scale (an integer, or a level: ``x8``,
    ``sizes``, ``hr``) and evaluator (None: all), in the store's order (``engine/query``)."""
    runs = store.runs(protocol=protocol, evaluator=evaluator)
    return [_table(runs, *view) for view in table_views(store, protocol, scale, evaluator)]


def _table(runs, proto, sc, ev) -> Table:
    spec = load_protocol(proto)
    with_std = [m for m in spec.metrics if f"{m}_std" in spec.metrics]
    shown = [m for m in spec.metrics if not (m.endswith("_std") and m[:-4] in spec.metrics)]
    here = [r for r in runs if (r.protocol, r.evaluator) == (proto, ev)]
    hr = [r for r in here if r.reference]
    at_scale = [r for r in here if r.level == sc and sc != HR_LEVEL]
    lr = [r for r in at_scale if r.model == LR_MODEL]
    lower = metric_spec(spec.primary_metric).lower_better
    ranked_runs = sorted((r for r in at_scale if r.model != LR_MODEL),
                         key=lambda r: _sort_key(r.metrics.get(spec.primary_metric), lower))
    ranked = [{"model": r.model, "reference": False, "metrics": r.metrics} for r in ranked_runs]
    rows = ([{"model": HR_LABEL if r.model == HR_MODEL else f"{r.model} (no degradation)",
              "reference": True, "metrics": r.metrics} for r in hr]
            + ranked + [{"model": LR_LABEL, "reference": True, "metrics": r.metrics} for r in lr])
    missing = []
    if spec.task == "folder":  # a free-form score: only the metrics it computed, no reference rows to add
        shown = [m for m in shown if any(m in r.metrics for r in here)]
    elif not hr:
        missing.append(f"fhbench run --model {HR_MODEL} --protocol {proto} --evaluator {ev}")
    if sc not in (HR_LEVEL, GIVEN_LEVEL) and not lr:  # a run over fixed LR sizes takes no --scale
        at = "" if sc == SIZES_LEVEL else f" --scale {level_scale(sc)}"
        missing.append(f"fhbench run --model {LR_MODEL} --protocol {proto}{at} --evaluator {ev}")
    hr_sizes = {row["model"]: _hr_size(r) for row, r in zip(rows, hr + ranked_runs + lr)}
    conventions = {row["model"]: _conventions(r) for row, r in zip(rows, hr + ranked_runs + lr) if _conventions(r)}
    return Table(proto, sc, ev, shown, spec.primary_metric, rows, with_std, missing, hr_sizes, conventions)


def _conventions(run) -> Optional[str]:
    """One line of what a free-form score used (its manifest's ``conventions``), else None."""
    conv = run.manifest.get("conventions") if isinstance(run.manifest, dict) else None
    if not isinstance(conv, dict):
        return None
    px, ev = conv.get("psnr_ssim") or {}, conv.get("evaluator") or {}
    text = (f"PSNR/SSIM {px.get('name')} (PSNR on {px.get('psnr_on')}, SSIM on {px.get('ssim_on')}, "
            f"crop border {px.get('crop_border')}); alignment {conv.get('alignment')}; evaluator {ev.get('name')} "
            f"on the {ev.get('template')} crop, weights SHA256 {str(ev.get('weights_sha256'))[:12]}")
    if conv.get("landmarks"):
        text += f"; landmarks {conv['landmarks']}"
    if conv.get("n_missing"):
        text += f"; {conv['n_missing']} of {conv.get('n_hr')} SR files missing (means over the rest)"
    return text


def _hr_size(run) -> Optional[str]:
    size = (run.manifest.get("data") or {}).get("hr_size") if isinstance(run.manifest, dict) else None
    return f"{size[0]}x{size[1]}" if isinstance(size, (list, tuple)) and len(size) == 2 else None


def _sort_key(value, lower_better):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return math.inf
    return value if lower_better else -value


def _best(table: Table, metric: str) -> Optional[float]:
    lower = metric_spec(metric).lower_better
    vals = [r["metrics"].get(metric) for r in table.rows if not r["reference"]]
    vals = [v for v in vals if v is not None and not math.isnan(v)]
    return (min(vals) if lower else max(vals)) if vals else None


def _is_best(table: Table, best: Dict[str, Optional[float]], row: dict, metric: str) -> bool:
    return not row["reference"] and best[metric] is not None and row["metrics"].get(metric) == best[metric]


def _cell(metrics, metric, with_std: bool):
    spec = metric_spec(metric)
    factor, digits = spec.factor, spec.digits
    v = metrics.get(metric)
    if v is None:
        return "-"
    text = "inf" if math.isinf(v) else f"{v * factor:.{digits}f}"
    std = metrics.get(f"{metric}_std")
    if with_std and std is not None and math.isfinite(v):
        text += f" ± {std * factor:.{digits}f}"
    return text


def best_metrics(t: Table, row: dict) -> List[str]:
    """The metrics (with their std keys) in which ``row`` holds the table's best value."""
    best = {m: _best(t, m) for m in t.metrics}
    return [m for m in t.metrics if _is_best(t, best, row, m)]


def _json_table(t: Table) -> dict:
    out = dict(t.__dict__)
    out["scale"] = t.scale  # the integer scale of an x<scale> table, else null
    out["best"] = {m: _best(t, m) for m in t.metrics}
    out["rows"] = [{**r, "best": best_metrics(t, r)} for r in t.rows]
    return out


def format_tables(tables: List[Table], fmt: str = "md") -> str:
    if fmt == "json":
        return json.dumps(_json_safe([_json_table(t) for t in tables]), indent=1, default=str, allow_nan=False)
    if fmt not in _FORMATTERS:
        raise FhbenchError(f"unknown leaderboard format {fmt!r} (known: {', '.join(FORMATS)})")
    return "\n".join(_FORMATTERS[fmt](t) for t in tables)


def _json_safe(value):
    """JSON has no inf/nan (the hr row's PSNR is inf): write them as "inf", "-inf", "nan",
    as the md and csv tables show them."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _title(t):
    return f"{t.protocol}, {describe_level(t.level)}, evaluator {t.evaluator}"


def _cells(t: Table, row: dict, bold) -> List[str]:
    best = {m: _best(t, m) for m in t.metrics}
    out = []
    for m in t.metrics:
        c = _cell(row["metrics"], m, m in t.with_std)
        out.append(bold(c) if _is_best(t, best, row, m) else c)
    return out


def _md(t: Table) -> str:
    heads = ["Model"] + [metric_spec(m).header for m in t.metrics]
    lines = [f"### {_title(t)}", "", "| " + " | ".join(heads) + " |",
             "|" + "|".join(["---"] + ["---:"] * len(t.metrics)) + "|"]
    for r in t.rows:
        name = r["model"].replace("|", r"\|")  # a | would end the cell
        lines.append("| " + " | ".join([name] + _cells(t, r, lambda c: f"**{c}**")) + " |")
    if t.missing_references:
        lines += ["", "Missing reference rows: " + "; ".join(f"`{c}`" for c in t.missing_references)]
    if t.frame_note():
        lines += ["", t.frame_note().replace("|", r"\|")]
    return "\n".join(lines) + "\n"


# LaTeX's special characters, and the non-ASCII ones of the headers and cells (pdflatex-safe)
_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
          "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
          "±": r"$\pm$", "μ": r"$\mu$", "σ": r"$\sigma$", "≥": r"$\geq$", "×": r"$\times$"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX.get(ch, ch) for ch in text)


def _latex(t: Table) -> str:
    cols = "l" + "r" * len(t.metrics)
    heads = ["Model"] + [latex_escape(metric_spec(m).header) for m in t.metrics]
    out = [f"% {_title(t)} (needs \\usepackage{{booktabs}})", r"\begin{tabular}{" + cols + "}", r"\toprule",
           " & ".join(heads) + r" \\", r"\midrule"]
    best = {m: _best(t, m) for m in t.metrics}
    for r in t.rows:
        cells = []
        for m in t.metrics:
            c = _cell(r["metrics"], m, m in t.with_std)
            c = r"$\infty$" if c == "inf" else latex_escape(c)
            cells.append(r"\textbf{" + c + "}" if _is_best(t, best, r, m) else c)
        out.append(" & ".join([latex_escape(r["model"])] + cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    out += [f"% missing reference row: {c}" for c in t.missing_references]
    out += [f"% {t.frame_note()}"] if t.frame_note() else []
    return "\n".join(out + [""])


def _csv_keys(t: Table) -> List[str]:
    keys = []
    for m in t.metrics:
        keys.append(m)
        std = metric_spec(m).std or (f"{m}_std" if m in t.with_std else None)
        if std:
            keys.append(std)
    return keys


def _csv_header(t: Table) -> List[str]:
    return ["protocol", "level", "evaluator", "model", "reference"] + _csv_keys(t) + ["best"]


def _csv_rows(t: Table) -> List[list]:
    keys = _csv_keys(t)
    return [[t.protocol, t.level, t.evaluator, r["model"], int(r["reference"])]
            + [r["metrics"].get(k, "") for k in keys] + [";".join(best_metrics(t, r))] for r in t.rows]


def _csv(t: Table) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(_csv_header(t))
    w.writerows(_csv_rows(t))
    return buf.getvalue()


def _html(t: Table) -> str:
    esc = html.escape
    heads = "".join(f"<th>{esc(h)}</th>" for h in ["Model"] + [metric_spec(m).header for m in t.metrics])
    body = []
    for r in t.rows:
        cells = "".join(f"<td>{c}</td>" for c in _cells(t, r, lambda c: f"<strong>{c}</strong>"))
        cls = ' class="reference"' if r["reference"] else ""
        body.append(f"<tr{cls}><th scope=\"row\">{esc(r['model'])}</th>{cells}</tr>")
    note = ""
    if t.missing_references:
        note = ('<p class="note">Missing reference rows: '
                + "; ".join(f"<code>{esc(c)}</code>" for c in t.missing_references) + "</p>")
    if t.frame_note():
        note += f'<p class="note">{esc(t.frame_note())}</p>'
    return (f'<table class="leaderboard"><caption>{esc(_title(t))}</caption>'
            f"<thead><tr>{heads}</tr></thead><tbody>{''.join(body)}</tbody></table>{note}\n")


_FORMATTERS = {"md": _md, "latex": _latex, "csv": _csv, "html": _html}
FORMATS = tuple(_FORMATTERS) + ("json",)


def write_results(tables: List[Table], out_dir, store: Optional[ResultStore] = None) -> List[Path]:
    """Write ``<protocol>.md`` (every table of the protocol) and ``<protocol>.csv`` (one
    header, one row per table row; scale and evaluator columns tell the tables apart) into
    ``out_dir``; with ``store``, also each shown run's manifest and metrics as
    ``manifests/<protocol>/<model>_<level>_<evaluator>.json`` (strict JSON: inf and nan as
    null plus a ``non_finite`` map, ``benchmark.engine.strict_json``). Every name in a file name
    goes through ``names.slug`` and every path is checked to stay inside ``out_dir``, so a
    stored run named ``../../x`` cannot write elsewhere. Each file is written whole
    (temporary file, then rename). Return the paths written."""
    out = Path(out_dir)
    jobs = []  # (path, text): every path is checked before the first file is written
    for proto in sorted({t.protocol for t in tables}):
        mine = [t for t in tables if t.protocol == proto]
        spec = load_protocol(proto)
        jobs.append((out / f"{slug(proto)}.md", f"# {proto}\n\n{spec.summary}\n\n" + "\n".join(_md(t) for t in mine)))
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(_csv_header(mine[0]))
        for t in mine:
            w.writerows(_csv_rows(t))
        jobs.append((out / f"{slug(proto)}.csv", buf.getvalue()))
    if store is not None:
        taken, done = {}, set()  # file name (case-folded: macOS, Windows) -> its run; run ids
        for t in tables:
            for r in store.runs(protocol=t.protocol, evaluator=t.evaluator):
                if not (r.level == t.level or r.reference) or r.id in done:
                    continue  # the hr run heads every table of its protocol: written once
                level = HR_LEVEL if r.reference else describe_level(r.level).replace(" ", "-")
                path = out / "manifests" / slug(r.protocol) / f"{slug(r.model)}_{level}_{slug(r.evaluator)}.json"
                key = str(path).casefold()
                if key in taken:  # e.g. runs "a_x8" and "a" at x8 with evaluators "e" and "x8_e"
                    raise FhbenchError(f"leaderboard --write: the runs {taken[key]} and {r.model!r} "
                                       f"({r.evaluator}, {describe_level(r.level)}) of {r.protocol} would both be "
                                       f"written to {path}; rename one")
                taken[key] = f"{r.model!r} ({r.evaluator}, {describe_level(r.level)})"
                done.add(r.id)
                body = {"model": r.model, "protocol": r.protocol, "level": r.level, "scale": r.scale,
                        "reference": r.reference, "evaluator": r.evaluator,
                        "created": r.created, "metrics": r.metrics, "manifest": r.manifest}
                jobs.append((path, strict_json.dumps(body, indent=1, default=str) + "\n"))
    out.mkdir(parents=True, exist_ok=True)
    for path, _ in jobs:
        _check_inside(path, out)
    return [_write_atomic(path, text, out) for path, text in jobs]


def _check_inside(path: Path, root: Path) -> None:
    """``path`` and its temporary file must resolve inside ``root`` (symlinks followed), else
    a FhbenchError naming it."""
    base = root.resolve()
    for p in (path, _tmp_path(path)):
        if not p.resolve().is_relative_to(base):
            raise FhbenchError(f"leaderboard --write: {p} would be written outside {root}; refused")


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


def _write_atomic(path: Path, text: str, root: Path) -> Path:
    """Write ``text`` to ``path`` whole (temporary file, then rename), after checking again
    that it stays inside ``root``."""
    _check_inside(path, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    tmp.write_text(text)
    tmp.replace(path)
    return path
