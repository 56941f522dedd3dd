"""``fhbench score --sr DIR --hr DIR``: score any folder of restored faces against its ground truth.

1. Check everything before any work: options, store, evaluators, the pairing
   (``folder_pairs``: by relative path, never by sorted names), every file (readable, 8-bit
   RGB, SR size = HR size), the labels, the output folder, and that the store's rows of the
   same set were scored against the same HR files.
2. Per pair: the PSNR/SSIM convention asked for (``engine/image_conventions.py``) and any other
   per-image metric on the whole images; the faces cut for the evaluators
   (``folder_faces``); each evaluator's SR and HR embeddings, then IDS, IDD, FR loss; with
   labels, rank-1 and verification (``folder_metrics``).
3. One leaderboard row per evaluator, protocol ``folder:<set>`` (``protocols.folder_protocol``:
   a set is its HR folder; every row of it shares those HR files), level ``given`` (the
   degradation is not fhbench's, so no scale is claimed); then ``--out``: ``pairs.json``
   (the explicit pairing and the conventions), ``per_image.csv`` (one row per HR image;
   its ``convention``, ``crop_border`` and ``alignment`` columns state how each was scored)
   and ``summary.json``, written whole (a temporary folder renamed into place).
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
from tqdm import tqdm

from benchmark.engine.cache import default_cache_dir
from benchmark.engine import folder_faces, folder_metrics
from benchmark.engine.folder_outputs import check_out_dir, default_out_dir, write_outputs
from benchmark.engine.folder_pairs import check_pairs, pair_folders, read_labels, read_rgb8
from benchmark.engine.names import check_run_name
from benchmark.engine.protocols import FOLDER_PREFIX
from benchmark.engine.store import GIVEN_LEVEL, ResultStore
from benchmark.errors import ConfigError, DataError
from benchmark.engine.image_conventions import convention
from benchmark.contracts.metric import metric_spec, pair_metrics, per_image_metrics

CHUNK = 256  # pairs whose face crops are held at once (about 33 MB each for SR and HR)


@dataclass
class ScoreOptions:
    sr_dir: str
    hr_dir: str
    evaluators: Sequence[str] = ("sface",)
    metrics: Optional[Sequence[str]] = None   # None: PSNR, SSIM, the identity metrics (+ labels')
    labels: Optional[str] = None
    aligned: Optional[str] = None             # None: MTCNN; "ffhq"; "sphereface-112x96"
    allow_missing: bool = False
    convention: str = "fhbench"
    crop_border: int = 0
    name: Optional[str] = None                # the row's name (default: the SR folder's name)
    set_name: Optional[str] = None            # the set, protocol folder:<set> (default: the HR folder's name)
    store: str = "results/fhbench.sqlite"
    out: Optional[str] = None
    replace: bool = False
    device: str = "cpu"
    backend: Optional[str] = None
    cache_dir: Optional[str] = None           # MTCNN landmark cache (None: default; "": none)
    progress: bool = True


def selected_metrics(names: Optional[Sequence[str]], with_labels: bool) -> Dict[str, List[str]]:
    """{"pixel", "landmark", "pair", "label"}: the metric names to compute, checked."""
    pixel = [m.name for m in per_image_metrics() if not m.opt_in]
    landmark = [m.name for m in per_image_metrics() if m.opt_in]
    pair = [m.name for m in pair_metrics()]
    label = list(folder_metrics.LABEL_METRICS)
    if names is None:
        want = pixel + pair + (label if with_labels else [])
    else:
        want = list(dict.fromkeys(names))
        unknown = [n for n in want if n not in pixel + landmark + pair + label]
        if unknown:
            raise ConfigError(f"--metrics: {unknown[0]!r} is not a per-image, identity, landmark or label metric "
                              f"(known: {', '.join(pixel + pair + landmark + label)})")
        if not with_labels and any(n in label for n in want):
            raise ConfigError(f"--metrics {', '.join(n for n in want if n in label)} need --labels FILE")
    return {kind: [n for n in want if n in names_of] for kind, names_of in
            (("pixel", pixel), ("landmark", landmark), ("pair", pair), ("label", label))}


@dataclass
class _Plan:
    opts: ScoreOptions
    store: ResultStore
    protocol: str
    name: str
    pairing: object
    labels: Optional[Dict[str, str]]
    metrics: Dict[str, List[str]]
    evaluators: list
    out: Path


def prepare(opts: ScoreOptions) -> _Plan:
    """Every check, cheapest first; nothing is computed or written."""
    from benchmark.evaluators import create_evaluator

    convention(opts.convention)  # an unknown name fails first
    if isinstance(opts.crop_border, bool) or not isinstance(opts.crop_border, int) or opts.crop_border < 0:
        raise ConfigError(f"--crop-border must be an integer >= 0, got {opts.crop_border!r}")
    folder_faces.check_aligned(opts.aligned)
    name = check_run_name(opts.name or Path(opts.sr_dir).resolve().name)
    protocol = FOLDER_PREFIX + check_run_name(opts.set_name or Path(opts.hr_dir).resolve().name)
    metrics = selected_metrics(opts.metrics, opts.labels is not None)
    if not opts.evaluators:
        raise ConfigError("--evaluator: name at least one")
    store = ResultStore(opts.store)
    store.check_writable()
    out = Path(opts.out) if opts.out else default_out_dir(protocol, name)
    check_out_dir(out)
    pairing = pair_folders(opts.sr_dir, opts.hr_dir, opts.allow_missing)
    labels = read_labels(opts.labels, pairing) if opts.labels is not None else None
    evaluators = [create_evaluator(e, device=opts.device, backend=opts.backend) for e in dict.fromkeys(opts.evaluators)]
    check_pairs(pairing, opts.progress)
    _check_geometry(pairing, opts, metrics)
    _check_set(store, protocol, name, pairing.hr_sha256(), settings(opts))
    for ev in evaluators:
        if not opts.replace:
            store.check_name(name, protocol, GIVEN_LEVEL, ev.name, {"model": _model_record(pairing, name)})
    return _Plan(opts, store, protocol, name, pairing, labels, metrics, evaluators, out)


def _check_geometry(pairing, opts: ScoreOptions, metrics: Dict[str, List[str]]) -> None:
    """Image sizes the options cannot work with fail here, naming the file, not half-way."""
    if opts.aligned is None and any(m.endswith("_2d106") for m in metrics["landmark"]):
        raise ConfigError("lmd_2d106 / nme_2d106 take the whole image as the face box: they need --aligned "
                          "faces (use lmd_dlib68, which detects the face, otherwise)")
    ssim = "ssim" in metrics["pixel"]
    for pair in pairing.pairs:
        h, w = pair.size
        if min(h, w) - 2 * opts.crop_border < (11 if ssim else 1):
            raise DataError(f"HR image {pairing.hr_dir / pair.hr} is {h}x{w}: too small for --crop-border "
                            f"{opts.crop_border}{' and SSIM' if ssim else ''}")
        if opts.aligned == "ffhq" and h != w:
            raise DataError(f"HR image {pairing.hr_dir / pair.hr} is {h}x{w}: FFHQ-aligned faces are square "
                            "(facexlib's template scales with the side); is --aligned right?")


def settings(opts: ScoreOptions) -> dict:
    """What makes two rows of one set comparable, besides the HR files: the PSNR/SSIM
    convention and crop border, the alignment and the labels file."""
    labels = hashlib.sha256(Path(opts.labels).read_bytes()).hexdigest() if opts.labels else None
    return {"convention": opts.convention, "crop_border": opts.crop_border, "aligned": opts.aligned or "mtcnn",
            "labels_sha256": labels}


def _check_set(store: ResultStore, protocol: str, name: str, hr_sha256: str, ours: dict) -> None:
    """The stored rows of the set (other than this name's) were scored against the same HR files
    and with the same settings: a leaderboard or a comparison of them is like for like."""
    for row in store.runs(protocol=protocol):
        manifest = row.manifest if isinstance(row.manifest, dict) else {}
        if (manifest.get("pairing") or {}).get("hr_sha256") != hr_sha256:
            raise DataError(f"set {protocol} in {store.path} was scored against other HR images (row {row.model!r}); "
                            f"name this set apart with --set NAME")
        theirs = manifest.get("settings") or {}
        differ = [k for k in ours if k in theirs and theirs[k] != ours[k]
                  and not (k == "labels_sha256" and None in (theirs[k], ours[k]))]
        if differ and row.model != name:
            k = differ[0]
            raise DataError(f"set {protocol} in {store.path} holds row {row.model!r} scored with {k} {theirs[k]!r}, "
                            f"not {ours[k]!r}; score with the same settings, or name this set apart with --set NAME")


def _model_record(pairing, name: str) -> dict:
    """The row's model: the SR files themselves (their hashes are its identity, for ``same_model``)."""
    h = hashlib.sha256()
    for p in pairing.pairs:
        h.update(f"{p.key}\0{p.sr_sha256}\n".encode())
    return {"kind": "folder", "name": name, "spec": str(pairing.sr_dir.resolve()), "identity": h.hexdigest()}


def compute(plan: _Plan) -> dict:
    """Per-image arrays (NaN where no SR file, or where a metric failed) and embeddings."""
    opts, pairing, sel = plan.opts, plan.pairing, plan.metrics
    conv = convention(opts.convention)
    pairs = pairing.pairs
    n = len(pairs)
    scored = np.array([p.sr is not None for p in pairs])
    cache = None if opts.cache_dir == "" else Path(opts.cache_dir or default_cache_dir()) / "alignment"
    cuts = folder_faces.face_cuts([pairing.hr_dir / p.hr for p in pairs], [p.size for p in pairs], opts.aligned,
                                  [p.key for p in pairs], cache, opts.device)
    values = {m: np.full(n, np.nan) for m in sel["pixel"] + sel["landmark"]}
    per_image = {"psnr": conv.psnr, "ssim": conv.ssim}
    dim = {ev.name: ev.embedding_dim for ev in plan.evaluators}
    emb = {ev.name: {"sr": np.zeros((n, dim[ev.name]), np.float32), "hr": np.zeros((n, dim[ev.name]), np.float32)}
           for ev in plan.evaluators}
    bar = tqdm(total=n, desc=f"scoring {plan.name}", unit="img", disable=not opts.progress)
    for start in range(0, n, CHUNK):
        idx = range(start, min(n, start + CHUNK))
        crops = {"sr": np.zeros((len(idx), 3) + folder_faces.FRAME.size, np.float32),
                 "hr": np.zeros((len(idx), 3) + folder_faces.FRAME.size, np.float32)}
        for j, k in enumerate(idx):
            hr8 = read_rgb8(pairing.hr_dir / pairs[k].hr, "HR image")
            crops["hr"][j] = folder_faces.cut(hr8, cuts.matrices[k])
            if not scored[k]:
                crops["sr"][j] = crops["hr"][j]  # embedded but never used: the pair has no SR file
                continue
            sr8 = read_rgb8(pairing.sr_dir / pairs[k].sr, "SR image")
            crops["sr"][j] = folder_faces.cut(sr8, cuts.matrices[k])
            sr, hr = (x.transpose(2, 0, 1)[None] / np.float32(255.0) for x in (sr8, hr8))
            for m in sel["pixel"]:
                f = per_image.get(m) or metric_spec(m).per_image
                values[m][k] = f(sr, hr, opts.crop_border)[0]
            for m in sel["landmark"]:  # landmarks need the whole face: no crop border
                values[m][k] = metric_spec(m).per_image(sr, hr, 0)[0]
        for ev in plan.evaluators:
            for role in ("sr", "hr"):
                emb[ev.name][role][start:start + len(idx)] = ev.embed(crops[role], folder_faces.FRAME)
        bar.update(len(idx))
    bar.close()
    return {"scored": scored, "values": values, "emb": emb, "cuts": cuts}


def evaluator_results(plan: _Plan, done: dict, ev) -> dict:
    """One evaluator's metrics (summaries and counts), per-image arrays and summaries."""
    scored, sel = done["scored"], plan.metrics
    e = done["emb"][ev.name]
    arrays = dict(done["values"])
    same = np.all(e["sr"] == e["hr"], axis=1)
    for m in pair_metrics():
        if m.name in sel["pair"]:
            v = np.asarray(m.per_pair(e["sr"], e["hr"]), dtype=np.float64)
            if m.identical is not None:  # equal embeddings: the value for identical inputs (as fhbench run)
                v[same] = m.identical
            v[~scored] = np.nan
            arrays[m.name] = v
    metrics, summaries = {}, {}
    for key, values in arrays.items():
        spec = metric_spec(key)
        s = folder_metrics.summary(values, scored, spec.counts_inf)
        summaries[key] = s
        metrics[key], metrics[f"{key}_std"] = s["mean"], s["std"]
        if spec.counts_inf:
            metrics[f"{key}_n_inf"] = s.get("n_inf", 0)
        if spec.counts_nan:
            metrics[f"{key}_n_failed"] = s["n_failed"]
    if sel["label"]:
        keys = [p.key for p in plan.pairing.pairs]
        label_values, label_arrays = folder_metrics.label_metrics(e["sr"], e["hr"], [plan.labels[k] for k in keys],
                                                                  scored)
        metrics.update({k: v for k, v in label_values.items() if k in sel["label"] or "_n_" in k})
        arrays.update(label_arrays)
    metrics.update(n_images=len(scored), n_scored=int(scored.sum()), n_missing=int((~scored).sum()))
    return {"metrics": metrics, "arrays": arrays, "summaries": summaries}


def conventions(plan: _Plan, done: dict, ev) -> dict:
    """What every output states: colour, PSNR/SSIM convention, alignment, evaluator, landmarks, counts."""
    from benchmark.contracts.metric import metric_spec as spec_of

    landmarks = [f"{m}: " + ", ".join(f"{k} {v}" for k, v in spec_of(m).per_image.describe().items()
                                      if k in ("backend", "points", "normaliser", "sha256"))
                 for m in plan.metrics["landmark"]]
    d = ev.describe()
    return {"colour": "RGB, 8 bits per channel, decoded once (OpenCV's BGR turned to RGB at read)",
            "psnr_ssim": convention(plan.opts.convention).describe(plan.opts.crop_border),
            "alignment": done["cuts"].describe(),
            "evaluator": {"name": ev.name, "template": d["template"], "weights_sha256": d["weights_sha256"],
                          "backend": getattr(ev, "backend", None)},
            "landmarks": "; ".join(landmarks) or None,
            "n_hr": len(done["scored"]), "n_missing": int((~done["scored"]).sum()),
            "missing_means": "a missing SR file is NaN in every per-image array; each mean and std is over the "
                             "scored images only (n_scored), never divided by the missing ones"}


def score_folders(opts: ScoreOptions) -> List[dict]:
    """Check, compute, store one row per evaluator, write ``--out``; the rows as ``fhbench run`` returns them."""
    from benchmark.engine.manifest import environment

    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    plan = prepare(opts)
    done = compute(plan)
    pairing_summary = {k: v for k, v in plan.pairing.manifest().items() if k != "pairs"}
    pairing_summary["missing"] = plan.pairing.missing
    sizes = {p.size for p in plan.pairing.pairs}
    env = environment()  # versions and the git commit: once, not once per evaluator
    results = []
    for ev in plan.evaluators:
        res = evaluator_results(plan, done, ev)
        manifest = {"started": started, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "environment": env, "kind": "fhbench score --sr --hr",
                    "conventions": conventions(plan, done, ev), "settings": settings(opts), "pairing": pairing_summary,
                    "model": _model_record(plan.pairing, plan.name), "evaluator": ev.describe(),
                    "alignment_fallback": done["cuts"].fallback,
                    "labels": _labels_record(opts.labels), "outputs": str(plan.out.resolve()),
                    "data": {"n_images": len(plan.pairing.pairs),
                             "hr_size": list(next(iter(sizes))) if len(sizes) == 1 else None}}
        run_id = plan.store.save(plan.name, plan.protocol, GIVEN_LEVEL, ev.name, res["metrics"], manifest,
                                 res["arrays"], replace=opts.replace)
        results.append({"id": run_id, "model": plan.name, "protocol": plan.protocol, "level": GIVEN_LEVEL,
                        "scale": None, "evaluator": ev.name, "metrics": res["metrics"], "manifest": manifest,
                        "summaries": res["summaries"], "arrays": res["arrays"]})
    write_outputs(plan, done, results)
    return results


def _labels_record(path) -> Optional[dict]:
    if path is None:
        return None
    return {"file": str(Path(path).resolve()), "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest()}
