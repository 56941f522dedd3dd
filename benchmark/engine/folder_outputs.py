"""The files of a free-form score (``fhbench score --sr --hr --out DIR``), written whole.

- ``pairs.json``: the explicit pairing (every HR file, its SR file or null, both SHA256s,
  the size), the ignored non-image files, and the conventions of each evaluator's row.
- ``per_image.csv``: one row per HR image in key order: ``key, hr_file, sr_file, status``
  (``scored`` or ``missing``), ``alignment`` (``mtcnn``, ``mtcnn-no-face-centre-crop`` or the
  pre-aligned frame), ``convention``, ``crop_border``, then the evaluator-free metrics
  (``psnr``, ``ssim``, landmarks) and ``<metric>[<evaluator>]`` for each evaluator's. Empty
  where the pair was not scored or the metric could not measure it.
- ``summary.json``: per evaluator, each metric's mean, std, ``n_scored``, ``n_missing`` and
  ``n_failed`` side by side, the label metrics, the conventions and the stored row's id.

The folder is built under a temporary name beside ``DIR`` and renamed into place; an
existing ``DIR`` is replaced only when it holds a previous score (its ``summary.json``).
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from benchmark.engine import strict_json
from benchmark.engine.names import slug
from benchmark.engine.staged_folder import staged_folder
from benchmark.errors import DataError

SUMMARY = "summary.json"


def default_out_dir(protocol: str, name: str) -> Path:
    return Path("results") / "score" / slug(protocol.split(":", 1)[1]) / slug(name)


def check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / SUMMARY).is_file():
        raise DataError(f"--out {out} is a folder that holds no earlier score ({SUMMARY}); refusing to replace it")


def _csv(plan, done, results) -> str:
    pairs, cuts, opts = plan.pairing.pairs, done["cuts"], plan.opts
    shared = list(done["values"])
    own = [(r["evaluator"], k) for r in results for k in r["arrays"]
           if k not in shared and np.shape(r["arrays"][k]) == (len(pairs),)]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["key", "hr_file", "sr_file", "status", "alignment", "convention", "crop_border"] + shared
               + [f"{k}[{ev}]" for ev, k in own])
    fallback = set(cuts.fallback)
    by_ev = {r["evaluator"]: r["arrays"] for r in results}
    for i, p in enumerate(pairs):
        align = ("mtcnn-no-face-centre-crop" if p.key in fallback else "mtcnn") if cuts.mode == "mtcnn" else cuts.mode
        cells = [done["values"][k][i] for k in shared] + [by_ev[ev][k][i] for ev, k in own]
        w.writerow([p.key, p.hr, p.sr or "", "scored" if p.sr else "missing", align, opts.convention,
                    opts.crop_border] + ["" if np.isnan(v) else repr(float(v)) for v in cells])
    return buf.getvalue()


def write_outputs(plan, done, results) -> Path:
    out = plan.out
    body = {r["evaluator"]: {"row": {"id": r["id"], "store": str(plan.store.path), "protocol": r["protocol"],
                                     "level": r["level"], "model": r["model"]},
                             "conventions": r["manifest"]["conventions"], "metrics": r["summaries"],
                             "label_metrics": {k: v for k, v in r["metrics"].items()
                                               if k.split("_n_")[0] in ("rank1", "auc", "eer", "verification")}}
            for r in results}
    files = {
        "pairs.json": strict_json.dumps({**plan.pairing.manifest(), "alignment_fallback": done["cuts"].fallback,
                                         "conventions": {r["evaluator"]: r["manifest"]["conventions"] for r in results}},
                                        indent=1),
        "per_image.csv": _csv(plan, done, results),
        SUMMARY: strict_json.dumps({"sr_dir": str(plan.pairing.sr_dir.resolve()),
                                    "hr_dir": str(plan.pairing.hr_dir.resolve()),
                                    "n_hr": len(plan.pairing.pairs), "n_scored": len(plan.pairing.scored),
                                    "n_missing": len(plan.pairing.missing), "evaluators": body}, indent=1),
    }
    with staged_folder(out) as tmp:
        for name, text in files.items():
            (tmp / name).write_text(text + ("" if text.endswith("\n") else "\n"))
    return out
