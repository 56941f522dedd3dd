"""Run a model anywhere: ``fhbench degrade`` writes a protocol's LR inputs as PNG files (with
a manifest of each image's degradation); ``fhbench score`` scores a folder of the model's SR
outputs, laid out the same way, through the folder adapter (``fhbench run --model DIR``).

The LR files are exactly what ``fhbench run`` feeds a model at that level (8-bit levels, so
PNG holds them losslessly): the HR faces of the protocol in its frame and HR size, degraded
with each image's content key. Files are named by the dataset's relative path with the
suffix ``.png`` (``Ariel_Sharon/Ariel_Sharon_0001.png``), which is where the folder adapter
looks for each SR image; the manifest ``fhbench-degrade.json`` pairs every file with its
image explicitly (relative path, content key, parameters), never by sorted names.

A protocol with fixed LR sizes (``lr_sizes``, e.g. lfw-ident) is written and scored as
``fhbench run`` runs it: every size in one go (no ``--scale``), one subfolder per size named
by its level (``7x6/``, ``14x12/`` ...), each holding every image; its SR folder has the same
subfolders, and the folder adapter picks the subfolder by the size of the LR batch. The row
is stored at level ``sizes``, as a run's.

Nothing half-written is left behind: the folder is written under a temporary name beside
``DIR`` and renamed into place when complete.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np

from benchmark.engine.folder_pairs import read_rgb8
from benchmark.engine.levels import protocol_levels
from benchmark.engine.pipeline import HRSource, Level, degrade
from benchmark.engine.protocols import load_protocol
from benchmark.engine.staged_folder import staged_folder
from benchmark.engine.store import SIZES_LEVEL, level_scale
from benchmark.errors import DataError
from benchmark.faces.roots import stays_inside
from benchmark.faces.templates import SPHEREFACE_112x96

MANIFEST = "fhbench-degrade.json"
SR_SUFFIXES = (".png", ".jpg", ".bmp", ".tif")  # what the folder adapter accepts, in its order
AS_RUN = "in one go, as fhbench run"  # how degrade and score take every LR size of a protocol


def _subfolder(row_level: str, level: Level) -> str:
    """Where a level's images go in a degrade or SR folder: the folder itself for one scale,
    ``<h>x<w>/`` per LR size (the folder adapter picks it by the LR batch's size)."""
    return level.name if row_level == SIZES_LEVEL else ""


def _faces(protocol, data_root):
    from benchmark.registry import TASKS

    task = TASKS.get(protocol.task)(protocol, data_root)
    faces = task.faces()
    if len(faces) == 0:
        raise DataError(f"protocol {protocol.name} selected no images under {data_root}")
    degraded = task.degraded()
    degraded = np.arange(len(faces)) if degraded is None else np.asarray(degraded, dtype=np.int64)
    return faces, degraded


def lr_relpath(relpath: str) -> str:
    """The file of one image in a degrade or SR folder: its relative path with ``.png``; a
    path that could leave the folder is refused, naming it."""
    if not stays_inside(relpath):
        raise DataError(f"image path {relpath!r} is not inside its folder; refusing to write it")
    return str(Path(relpath).with_suffix(".png"))


@dataclass
class DegradeResult:
    out: Path
    n_images: int
    manifest: Path


def write_degraded(protocol_name: str, out, scale: Optional[int] = None, data_root: str = "data",
                   overwrite: bool = False, cache_dir: Optional[str] = None, chunk: int = 256) -> DegradeResult:
    """Write the LR inputs of ``protocol_name`` at ``scale`` (every LR size, one subfolder each,
    for an ``lr_sizes`` protocol) into ``out`` (see the module doc)."""
    protocol = load_protocol(protocol_name)
    row_level, levels = protocol_levels(protocol, scale, AS_RUN)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DataError(f"--out {out} is not empty; pass --overwrite to replace it")
    faces, degraded = _faces(protocol, data_root)
    keys = faces.image_keys()
    hr_source = HRSource(faces, protocol.hr_size, cache_dir)
    seen, order = set(), []
    for i in degraded:  # each image once (a face listed twice is one file)
        if faces.relpaths[i] not in seen:
            seen.add(faces.relpaths[i])
            order.append(int(i))
    names = {faces.relpaths[i]: lr_relpath(faces.relpaths[i]) for i in order}
    if len(set(names.values())) != len(names):
        raise DataError(f"protocol {protocol.name}: two images map to one .png name; cannot write them apart")
    with staged_folder(out) as tmp:
        for s in range(0, len(order), chunk):
            idx = np.array(order[s:s + chunk])
            hr = hr_source.load(idx)
            for level in levels:
                _write_lr(tmp / _subfolder(row_level, level), level, hr, idx, keys, faces, names)
        manifest = _degrade_manifest(protocol, row_level, levels, hr_source, faces, keys, order, names, data_root, out)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return DegradeResult(out, len(order), out / MANIFEST)


def _write_lr(folder: Path, level: Level, hr, idx, keys, faces, names) -> None:
    """One chunk's LR images of one level as 8-bit RGB PNG files under ``folder``."""
    import cv2

    from benchmark.faces.resize import to_uint8_levels

    lr = to_uint8_levels(degrade(level.degradation, hr, [keys[i] for i in idx]))
    for j, i in enumerate(idx):
        path = folder / names[faces.relpaths[i]]
        path.parent.mkdir(parents=True, exist_ok=True)
        hwc = np.rint(lr[j].transpose(1, 2, 0) * 255.0).astype(np.uint8)[:, :, ::-1]
        ok, buf = cv2.imencode(".png", np.ascontiguousarray(hwc))
        if not ok:
            raise DataError(f"cannot encode the LR image of {faces.relpaths[i]}")
        buf.tofile(str(path))


def _degrade_manifest(protocol, row_level, levels, hr_source, faces, keys, order, names, data_root, out) -> dict:
    from benchmark.engine.manifest import environment

    hr_hw = hr_source.hr_size
    one = row_level != SIZES_LEVEL
    params = {lv.name: lv.degradation.params([keys[i] for i in order]) for lv in levels
              if hasattr(lv.degradation, "params")}
    layout = ("<relpath>.png" if one else
              "<h>x<w>/<relpath>.png, one subfolder per LR size (" + ", ".join(lv.name for lv in levels) + ")")
    level_option = f"--scale {row_level[1:]} " if one else ""
    return {
        "fhbench": "degrade", "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "protocol": protocol.name, "scale": int(row_level[1:]) if one else None, "level": row_level,
        "degradation": levels[0].degradation.spec() if one else None,
        "levels": {lv.name: {"folder": _subfolder(row_level, lv), "lr_size": list(lv.degradation.lr_size(hr_hw)),
                             "degradation": lv.degradation.spec()} for lv in levels},
        "hr_size": list(hr_hw), "frame": hr_source.frame.name,
        **({"lr_size": list(levels[0].degradation.lr_size(hr_hw))} if one else {}),
        "layout": layout, "colour": "RGB, 8 bits per channel, PNG",
        "data": {"root": str(Path(data_root).resolve()), "image_root": str(Path(faces.image_root).resolve()),
                 "sha256": faces.content_hash(keys), "n_images": len(order), **hr_source.alignment_report()},
        "how_to_score": f"write each SR image ({hr_hw[0]}x{hr_hw[1]} RGB) as {layout} in a folder SR, then: "
                        f"fhbench score --sr SR --protocol {protocol.name} {level_option}--degraded {out}",
        "images": [{"relpath": faces.relpaths[i], "file": names[faces.relpaths[i]], "key": keys[i],
                    **({"params": params[levels[0].name][n]} if one and params else
                       {"params": {lv: p[n] for lv, p in params.items()}} if params else {})}
                   for n, i in enumerate(order)],
        "environment": environment(),
    }


def check_sr_folder(sr_dir, relpaths: List[str], hr_hw, allow_extra: bool = False) -> None:
    """Every expected SR image present (``<relpath>`` or ``<relpath>.png`` ...), 3-channel 8-bit
    at the HR size, and no file the protocol does not expect: one line naming the culprit."""
    sr_dir = Path(sr_dir)
    if not sr_dir.is_dir():
        raise DataError(f"--sr {sr_dir} is not a folder")
    found, missing = {}, []
    for rel in dict.fromkeys(relpaths):
        if not stays_inside(rel):
            raise DataError(f"image path {rel!r} is not inside its folder")
        base = sr_dir / rel
        cand = [c for c in [base] + [base.with_suffix(s) for s in SR_SUFFIXES] if c.is_file()]
        if cand:
            found[rel] = cand[0]
        else:
            missing.append(rel)
    if missing:
        raise DataError(f"--sr {sr_dir} lacks {len(missing)} of {len(found) + len(missing)} SR images, "
                        f"first {str(Path(missing[0]).with_suffix('.png'))!r}")
    expected = {p.resolve() for p in found.values()}
    extra = sorted(str(p.relative_to(sr_dir)) for p in sr_dir.rglob("*")
                   if p.is_file() and p.name != MANIFEST and p.resolve() not in expected)
    if extra and not allow_extra:
        raise DataError(f"--sr {sr_dir} holds {len(extra)} file(s) the protocol does not name, "
                        f"first {extra[0]!r} (is it the right folder?)")
    for rel, path in found.items():
        img = read_rgb8(path, "SR image")
        if tuple(img.shape[:2]) != tuple(hr_hw):
            raise DataError(f"SR image {path} is {img.shape[0]}x{img.shape[1]}, expected the HR size "
                            f"{hr_hw[0]}x{hr_hw[1]}")


def score_folder(sr_dir, protocol_name: str, scale: Optional[int] = None, degraded_dir=None,
                 evaluator: str = "sface", data_root: str = "data", store: str = "results/fhbench.sqlite",
                 name: Optional[str] = None, replace: bool = False, cache_dir: Optional[str] = None,
                 progress: bool = False, backend: Optional[str] = None) -> dict:
    """Score a folder of SR images on a protocol: the folder is checked whole first (see
    ``check_sr_folder``, per LR-size subfolder for an ``lr_sizes`` protocol; with
    ``degraded_dir``, against its manifest too), then run as the folder adapter, stored as a
    leaderboard row (``leaderboard``, ``compare``, ``report``)."""
    from benchmark.engine.runner import RunOptions, run

    protocol = load_protocol(protocol_name)
    row_level, levels = protocol_levels(protocol, scale, AS_RUN)
    faces, degraded = _faces(protocol, data_root)
    hr_hw = tuple(protocol.hr_size) if protocol.hr_size else (faces.aligned_frame or SPHEREFACE_112x96).size
    relpaths = [faces.relpaths[i] for i in degraded]
    if degraded_dir is not None:
        _check_degraded(degraded_dir, protocol, row_level, levels, faces, degraded, data_root)
    if row_level == SIZES_LEVEL:
        subfolders = [lv.name for lv in levels]
        sr = Path(sr_dir)
        if not sr.is_dir():
            raise DataError(f"--sr {sr} is not a folder")
        stray = sorted(p.name for p in sr.iterdir() if p.name not in subfolders and p.name != MANIFEST)
        if stray:
            raise DataError(f"--sr {sr} holds {stray[0]!r}, not one of the LR-size subfolders of protocol "
                            f"{protocol.name} ({', '.join(subfolders)})")
        for sub in subfolders:
            check_sr_folder(sr / sub, relpaths, hr_hw)
    else:
        check_sr_folder(sr_dir, relpaths, hr_hw)
    opts = RunOptions(model=str(sr_dir), protocol=protocol.name, scale=level_scale(row_level), evaluator=evaluator,
                      data_root=data_root, store=store, cache_dir=cache_dir, progress=progress, name=name,
                      replace=replace, backend=backend)
    return run(opts)


def _check_degraded(degraded_dir, protocol, row_level, levels, faces, degraded, data_root) -> None:
    """The folder ``fhbench degrade`` wrote was written for this protocol, level, degradation and data."""
    mpath = Path(degraded_dir) / MANIFEST
    try:
        written = json.loads(mpath.read_text())
    except (OSError, ValueError) as err:
        raise DataError(f"--degraded {degraded_dir}: cannot read {MANIFEST} ({type(err).__name__})") from None
    got_level = written.get("level") or (f"x{written.get('scale')}" if written.get("scale") else None)
    if (written.get("protocol"), got_level) != (protocol.name, row_level):
        raise DataError(f"--degraded {degraded_dir} holds {written.get('protocol')} {got_level}, "
                        f"not {protocol.name} {row_level}")
    keys = faces.image_keys()
    want = {faces.relpaths[i]: keys[i] for i in degraded}
    got = {im["relpath"]: im["key"] for im in written.get("images", [])}
    if got != want:
        diff = sorted(set(got.items()) ^ set(want.items()))
        raise DataError(f"--degraded {degraded_dir} was written from other images than {data_root} holds "
                        f"(first difference: {diff[0][0]!r}); degrade again")
    specs = {name: lv.get("degradation") for name, lv in (written.get("levels") or {}).items()}
    if not specs and len(levels) == 1:  # written before per-level records
        specs = {levels[0].name: written.get("degradation")}
    if specs != json.loads(json.dumps({lv.name: lv.degradation.spec() for lv in levels})):  # as JSON holds them
        raise DataError(f"--degraded {degraded_dir} used another degradation than protocol {protocol.name} "
                        "now specifies; degrade again")
