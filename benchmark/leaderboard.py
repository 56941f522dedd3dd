"""Leaderboards: one ranked table per (protocol, scale, evaluator) from the results store.

Rows are models ranked by the protocol's primary metric; the ``hr`` reference row (no
degradation, stored at scale 1) is shown in every table of its protocol and evaluator as
the upper bound, and is not a candidate for "best". Formats: md, csv, latex, json.
"""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from typing import List, Optional

from .errors import FhbenchError
from .protocols import load_protocol
from .store import ResultStore

# metric: (header, scale factor for display, decimals, lower is better, std key)
METRIC_FORMATS = {
    "accuracy": ("Acc (%)", 100, 2, False, "accuracy_std"),
    "auc": ("AUC (%)", 100, 2, False, None),
    "eer": ("EER (%)", 100, 2, True, None),
    "psnr": ("PSNR (dB)", 1, 2, False, "psnr_std"),
    "ssim": ("SSIM", 1, 4, False, "ssim_std"),
    "fr_loss": ("FR loss", 1, 4, True, "fr_loss_std"),
}
HIDDEN = {"accuracy_std"}  # shown as +- beside its mean


@dataclass
class Table:
    protocol: str
    scale: int
    evaluator: str
    metrics: List[str]
    primary: str
    rows: List[dict]  # {"model", "reference": bool, "metrics": {...}}


def metric_format(name):
    return METRIC_FORMATS.get(name, (name, 1, 4, False, None))


def build_tables(store: ResultStore, protocol=None, scale=None, evaluator=None) -> List[Table]:
    runs = store.runs(protocol=protocol, evaluator=evaluator)
    if not runs:
        what = " ".join(f"{k}={v}" for k, v in (("protocol", protocol), ("evaluator", evaluator)) if v)
        raise FhbenchError(f"no runs in {store.path}" + (f" for {what}" if what else "")
                           + "; run `fhbench run --model M --protocol P` first")
    tables = []
    groups = sorted({(r.protocol, r.scale, r.evaluator) for r in runs if r.scale != 1})
    if scale is not None:
        groups = [g for g in groups if g[1] == scale]
    for proto, sc, ev in groups:
        spec = load_protocol(proto)
        shown = [m for m in spec.metrics if m not in HIDDEN]
        rows = [{"model": r.model, "reference": False, "metrics": r.metrics}
                for r in runs if (r.protocol, r.scale, r.evaluator) == (proto, sc, ev)]
        _, _, _, lower, _ = metric_format(spec.primary_metric)
        rows.sort(key=lambda row: _sort_key(row["metrics"].get(spec.primary_metric), lower))
        refs = [{"model": f"{r.model} (no degradation)", "reference": True, "metrics": r.metrics}
                for r in runs if (r.protocol, r.scale, r.evaluator) == (proto, 1, ev)]
        tables.append(Table(proto, sc, ev, shown, spec.primary_metric, refs + rows))
    # Only reference rows for a protocol: still show them (e.g. right after `--model hr`).
    for proto, ev in sorted({(r.protocol, r.evaluator) for r in runs if r.scale == 1}):
        if scale is None and not any(t.protocol == proto and t.evaluator == ev for t in tables):
            spec = load_protocol(proto)
            refs = [{"model": f"{r.model} (no degradation)", "reference": True, "metrics": r.metrics}
                    for r in runs if (r.protocol, r.scale, r.evaluator) == (proto, 1, ev)]
            tables.append(Table(proto, 1, ev, [m for m in spec.metrics if m not in HIDDEN],
                                spec.primary_metric, refs))
    if not tables:
        raise FhbenchError(f"no runs in {store.path} at scale {scale}")
    return tables


def _sort_key(value, lower_better):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return math.inf
    return value if lower_better else -value


def _best(table: Table, metric: str) -> Optional[float]:
    _, _, _, lower, _ = metric_format(metric)
    vals = [r["metrics"].get(metric) for r in table.rows if not r["reference"]]
    vals = [v for v in vals if v is not None and not math.isnan(v)]
    return (min(vals) if lower else max(vals)) if vals else None


def _cell(metrics, metric):
    _, factor, digits, _, std_key = metric_format(metric)
    v = metrics.get(metric)
    if v is None:
        return "-"
    text = "inf" if math.isinf(v) else f"{v * factor:.{digits}f}"
    if std_key and metrics.get(std_key) is not None and not math.isinf(v) and metric == "accuracy":
        text += f" ± {metrics[std_key] * factor:.{digits}f}"
    return text


def format_tables(tables: List[Table], fmt: str = "md") -> str:
    if fmt == "json":
        return json.dumps(_json_safe([t.__dict__ for t in tables]), indent=1, default=str, allow_nan=False)
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
    scale = "no degradation" if t.scale == 1 else f"x{t.scale}"
    return f"{t.protocol}, {scale}, evaluator {t.evaluator}"


def _md(t: Table) -> str:
    heads = ["Model"] + [metric_format(m)[0] for m in t.metrics]
    lines = [f"### {_title(t)}", "", "| " + " | ".join(heads) + " |",
             "|" + "|".join(["---"] + ["---:"] * len(t.metrics)) + "|"]
    best = {m: _best(t, m) for m in t.metrics}
    for r in t.rows:
        cells = [r["model"]]
        for m in t.metrics:
            c = _cell(r["metrics"], m)
            if not r["reference"] and best[m] is not None and r["metrics"].get(m) == best[m]:
                c = f"**{c}**"
            cells.append(c)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _latex(t: Table) -> str:
    cols = "l" + "r" * len(t.metrics)
    heads = ["Model"] + [metric_format(m)[0].replace("%", r"\%") for m in t.metrics]
    best = {m: _best(t, m) for m in t.metrics}
    out = [f"% {_title(t)}", r"\begin{tabular}{" + cols + "}", r"\toprule", " & ".join(heads) + r" \\", r"\midrule"]
    for r in t.rows:
        cells = [r["model"].replace("_", r"\_")]
        for m in t.metrics:
            c = _cell(r["metrics"], m).replace("±", r"$\pm$")
            if not r["reference"] and best[m] is not None and r["metrics"].get(m) == best[m]:
                c = r"\textbf{" + c + "}"
            cells.append(c)
        out.append(" & ".join(cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(out)


def _csv(t: Table) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    keys = []
    for m in t.metrics:
        keys.append(m)
        std = metric_format(m)[4]
        if std:
            keys.append(std)
    w.writerow(["protocol", "scale", "evaluator", "model", "reference"] + keys)
    for r in t.rows:
        w.writerow([t.protocol, t.scale, t.evaluator, r["model"], int(r["reference"])]
                   + [r["metrics"].get(k, "") for k in keys])
    return buf.getvalue()


_FORMATTERS = {"md": _md, "latex": _latex, "csv": _csv}
FORMATS = tuple(_FORMATTERS) + ("json",)
