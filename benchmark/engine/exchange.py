"""Run a model anywhere: ``fhbench degrade`` writes a protocol's LR inputs as PNG files (with
a manifest of each image's degradation); ``fhbench score`` scores a folder of the model's SR
outputs, laid out the same way, through the folder adapter (``fhbench run --model DIR``).

The LR files are exactly what ``fhbench run`` feeds a model at that level (8-bit levels, so
PNG holds them losslessly): the HR faces of the protocol in its frame and HR size, degraded
with each image's content key. Files are named by the dataset's relative path with the
suffix ``.png`` (``Ariel_Sharon/Ariel_Sharon_0001.png``), which is where the folder adapter
looks for each SR image; the manifest ``fhbench-degrade.json`` pairs every file with its
image explicitly (relative path, content key, parameters), never by sorted names.

Nothing half-written is left behind: the folder is written under a temporary name beside
``DIR`` and renamed into place when complete.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np

from benchmark.engine.pipeline import HRSource, Level, degrade
from benchmark.engine.protocols import load_protocol
from benchmark.errors import ConfigError, DataError
from benchmark.faces.roots import stays_inside
from benchmark.faces.templates import SPHEREFACE_112x96

MANIFEST = "fhbench-degrade.json"
SR_SUFFIXES = (".png", ".jpg", ".bmp", ".tif")  # what the folder adapter accepts, in its order


def _level(protocol, scale: Optional[int]) -> Level:
    from benchmark.contracts.degradation import make_degradation

    if protocol.lr_sizes:
        raise ConfigError(f"protocol {protocol.name} runs fixed LR sizes ({', '.join(protocol.level_names)}); "
                          "fhbench degrade writes protocols with scales only")
    scale = scale or protocol.default_scale
    if scale not in protocol.scales:
        raise ConfigError(f"protocol {protocol.name} runs at scales {protocol.scales}, not {scale}")
    return Level(f"x{scale}", make_degradation(protocol.degradation, scale=scale, **protocol.degradation_options))


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
    """Write the LR inputs of ``protocol_name`` at ``scale`` into ``out`` (see the module doc)."""
    import cv2

    from benchmark.engine.manifest import environment
    from benchmark.faces.resize import to_uint8_levels

    protocol = load_protocol(protocol_name)
    level = _level(protocol, scale)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DataError(f"--out {out} is not empty; pass --overwrite to replace it")
    faces, degraded = _faces(protocol, data_root)
    keys = faces.image_keys()
    hr_source = HRSource(faces, protocol.hr_size, cache_dir)
    lr_hw = level.degradation.lr_size(hr_source.hr_size)
    seen, order = set(), []
    for i in degraded:  # each image once (a face listed twice is one file)
        if faces.relpaths[i] not in seen:
            seen.add(faces.relpaths[i])
            order.append(int(i))
    names = {faces.relpaths[i]: lr_relpath(faces.relpaths[i]) for i in order}
    clash = len(set(names.values())) != len(names)
    if clash:
        raise DataError(f"protocol {protocol.name}: two images map to one .png name; cannot write them apart")
    params = level.degradation.params([keys[i] for i in order]) if hasattr(level.degradation, "params") else None
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        for s in range(0, len(order), chunk):
            idx = np.array(order[s:s + chunk])
            hr = hr_source.load(idx)
            lr = to_uint8_levels(degrade(level.degradation, hr, [keys[i] for i in idx]))
            for j, i in enumerate(idx):
                path = tmp / names[faces.relpaths[i]]
                path.parent.mkdir(parents=True, exist_ok=True)
                hwc = np.rint(lr[j].transpose(1, 2, 0) * 255.0).astype(np.uint8)[:, :, ::-1]
                ok, buf = cv2.imencode(".png", np.ascontiguousarray(hwc))
                if not ok:
                    raise DataError(f"cannot encode the LR image of {faces.relpaths[i]}")
                buf.tofile(str(path))
        manifest = {
            "fhbench": "degrade", "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "protocol": protocol.name, "scale": int(level.name[1:]), "level": level.name,
            "degradation": level.degradation.spec(),
            "hr_size": list(hr_source.hr_size), "lr_size": list(lr_hw), "frame": hr_source.frame.name,
            "colour": "RGB, 8 bits per channel, PNG",
            "data": {"root": str(Path(data_root).resolve()), "image_root": str(Path(faces.image_root).resolve()),
                     "sha256": faces.content_hash(keys), "n_images": len(order),
                     **hr_source.alignment_report()},
            "how_to_score": f"write each SR image as <relpath>.png ({hr_source.hr_size[0]}x{hr_source.hr_size[1]} "
                            f"RGB) in a folder SR, then: fhbench score --sr SR --protocol {protocol.name} "
                            f"--scale {level.name[1:]} --degraded {out}",
            "images": [{"relpath": faces.relpaths[i], "file": names[faces.relpaths[i]], "key": keys[i],
                        **({"params": params[n]} if params is not None else {})}
                       for n, i in enumerate(order)],
            "environment": environment(),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / "x")
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return DegradeResult(out, len(order), out / MANIFEST)


def check_sr_folder(sr_dir, relpaths: List[str], hr_hw, allow_extra: bool = False) -> None:
    """Every expected SR image present (``<relpath>`` or ``<relpath>.png`` ...), 3-channel 8-bit
    at the HR size, and no file the protocol does not expect: one line naming the culprit."""
    import cv2

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
        img = cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise DataError(f"SR image {path} is unreadable or not an image")
        if img.ndim == 2 or img.shape[2] == 1:
            raise DataError(f"SR image {path} is grey-scale; write 3-channel RGB")
        if img.shape[2] == 4:
            raise DataError(f"SR image {path} has an alpha channel (RGBA); write 3-channel RGB")
        if img.dtype != np.uint8:
            raise DataError(f"SR image {path} has {img.dtype} pixels; write 8-bit RGB")
        if tuple(img.shape[:2]) != tuple(hr_hw):
            raise DataError(f"SR image {path} is {img.shape[0]}x{img.shape[1]}, expected the HR size "
                            f"{hr_hw[0]}x{hr_hw[1]}")


def score_folder(sr_dir, protocol_name: str, scale: Optional[int] = None, degraded_dir=None,
                 evaluator: str = "sface", data_root: str = "data", store: str = "results/fhbench.sqlite",
                 name: Optional[str] = None, replace: bool = False, cache_dir: Optional[str] = None,
                 progress: bool = False) -> dict:
    """Score a folder of SR images on a protocol: the folder is checked whole first (see
    ``check_sr_folder``; with ``degraded_dir``, against its manifest too), then run as the
    folder adapter, stored as a leaderboard row (``leaderboard``, ``compare``, ``report``)."""
    from benchmark.engine.runner import RunOptions, run

    protocol = load_protocol(protocol_name)
    level = _level(protocol, scale)
    scale = int(level.name[1:])
    faces, degraded = _faces(protocol, data_root)
    hr_hw = tuple(protocol.hr_size) if protocol.hr_size else (faces.aligned_frame or SPHEREFACE_112x96).size
    relpaths = [faces.relpaths[i] for i in degraded]
    if degraded_dir is not None:
        mpath = Path(degraded_dir) / MANIFEST
        try:
            written = json.loads(mpath.read_text())
        except (OSError, ValueError) as err:
            raise DataError(f"--degraded {degraded_dir}: cannot read {MANIFEST} ({type(err).__name__})") from None
        if (written.get("protocol"), written.get("scale")) != (protocol.name, scale):
            raise DataError(f"--degraded {degraded_dir} holds {written.get('protocol')} x{written.get('scale')}, "
                            f"not {protocol.name} x{scale}")
        keys = faces.image_keys()
        want = {faces.relpaths[i]: keys[i] for i in degraded}
        got = {im["relpath"]: im["key"] for im in written.get("images", [])}
        if got != want:
            diff = sorted(set(got.items()) ^ set(want.items()))
            raise DataError(f"--degraded {degraded_dir} was written from other images than {data_root} holds "
                            f"(first difference: {diff[0][0]!r}); degrade again")
        if written.get("degradation") != level.degradation.spec():
            raise DataError(f"--degraded {degraded_dir} used another degradation than protocol {protocol.name} "
                            "now specifies; degrade again")
    check_sr_folder(sr_dir, relpaths, hr_hw)
    opts = RunOptions(model=str(sr_dir), protocol=protocol.name, scale=scale, evaluator=evaluator,
                      data_root=data_root, store=store, cache_dir=cache_dir, progress=progress, name=name,
                      replace=replace)
    return run(opts)
