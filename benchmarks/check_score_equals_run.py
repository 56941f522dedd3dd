"""Does ``fhbench score`` of a folder reproduce ``fhbench run``? On an LFW subset:

    python benchmarks/check_score_equals_run.py [--data-root ../shared/data/lfw] [--pairs-per-fold 30]
        [--scale 4] [--work DIR] [--json PATH]

1. A data root holding the first ``--pairs-per-fold`` same and different pairs of each of the
   ten folds of the official pairs.txt (600 pairs by default), the aligned faces linked.
2. ``fhbench degrade --protocol lfw-10fold --scale S`` writes their LR PNG files.
3. Another program's model: each LR PNG MATLAB-bicubic upsampled to 112x96, clipped, and
   written as an 8-bit PNG (``quantised_bicubic``).
4. That folder scored three ways: free-form (``score --sr --hr --aligned sphereface-112x96``,
   the HR folder being the subset's aligned faces), protocol mode (``score --protocol``), and
   ``fhbench run --model benchmarks.check_score_equals_run:quantised_bicubic``; plus
   ``fhbench run --model bicubic`` (the same model without the 8-bit PNG rounding).

Printed: the largest per-image difference of PSNR, SSIM, IDS, IDD and FR loss between each
score and the run of the same model (0 = bit-identical), and the mean differences to the
unquantised bicubic run.
"""
import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout, not whichever fhbench is installed

from benchmark.datasets.lfw import write_pairs_subset  # noqa: E402
from benchmark.faces.resize import upsample_bicubic  # noqa: E402

METRICS = ("psnr", "ssim", "ids", "idd", "fr_loss")


def quantised_bicubic(lr):
    """MATLAB bicubic up to 112x96, clipped, rounded to 8-bit levels: what a PNG holds."""
    x = lr.numpy() if hasattr(lr, "numpy") else np.asarray(lr)
    up = np.clip(upsample_bicubic(x, (112, 96)), 0, 1)
    return torch.from_numpy((np.rint(up.astype(np.float64) * 255) / 255).astype(np.float32))


def subset_root(lfw: Path, out: Path, per_fold: int) -> Path:
    return write_pairs_subset(lfw, out, per_fold)


def write_sr(lr_dir: Path, sr_dir: Path) -> None:
    import cv2

    for p in sorted(lr_dir.rglob("*.png")):
        lr = cv2.imread(str(p), cv2.IMREAD_COLOR)[:, :, ::-1].transpose(2, 0, 1)[None] / np.float32(255)
        sr = np.rint(quantised_bicubic(lr)[0].numpy() * 255).astype(np.uint8)
        dest = sr_dir / p.relative_to(lr_dir)
        dest.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(dest), sr.transpose(1, 2, 0)[:, :, ::-1])


def hr_folder(root: Path, lr_dir: Path, out: Path) -> None:
    """The protocol's HR faces as a plain folder (links), the set free-form scoring pairs with."""
    for im in json.loads((lr_dir / "fhbench-degrade.json").read_text())["images"]:
        dest = out / im["relpath"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.symlink_to((root / "aligned-112x96" / im["relpath"]).resolve())


def main():
    from benchmark.engine.exchange import score_folder, write_degraded
    from benchmark.engine.folder_score import ScoreOptions, score_folders
    from benchmark.engine.runner import RunOptions, run
    from benchmark.engine.store import ResultStore

    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw"))
    ap.add_argument("--pairs-per-fold", type=int, default=30)
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--work", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="fhbench-check-"))
    if work.exists():
        shutil.rmtree(work)
    root = subset_root(Path(args.data_root), work / "lfw", args.pairs_per_fold)
    store, cache = str(work / "r.sqlite"), str(work / "cache")
    t0 = time.time()
    write_degraded("lfw-10fold", work / "lr", args.scale, str(root), cache_dir="")
    write_sr(work / "lr", work / "sr")
    hr_folder(root, work / "lr", work / "hr")
    score_folders(ScoreOptions(str(work / "sr"), str(work / "hr"), aligned="sphereface-112x96", name="free-form",
                               store=store, out=str(work / "out"), cache_dir="", progress=False))
    score_folder(str(work / "sr"), "lfw-10fold", args.scale, str(work / "lr"), data_root=str(root), store=store,
                 name="protocol-mode", cache_dir=cache)
    for model, name in (("benchmarks.check_score_equals_run:quantised_bicubic", "run-quantised"),
                        ("bicubic", "run-bicubic")):
        run(RunOptions(model=model, protocol="lfw-10fold", scale=args.scale, data_root=str(root), store=store,
                       cache_dir=cache, progress=False, name=name))
    st = ResultStore(store)
    runs = {r.model: r for r in st.runs()}
    arrays = {name: st.arrays(r.id) for name, r in runs.items()}
    pairs = json.loads((work / "out" / "pairs.json").read_text())["pairs"]
    relpaths = [im["relpath"] for im in json.loads((work / "lr" / "fhbench-degrade.json").read_text())["images"]]
    at = {q["key"]: i for i, q in enumerate(pairs)}
    order = [at[str(Path(r).with_suffix(""))] for r in relpaths]  # free-form key order -> protocol order
    arrays["free-form"] = {k: v[order] for k, v in arrays["free-form"].items()}
    out = {"n_images": len(relpaths), "n_pairs": 10 * 2 * args.pairs_per_fold, "scale": args.scale,
           "seconds": round(time.time() - t0, 1)}
    for name in ("free-form", "protocol-mode"):
        out[f"{name} vs run-quantised, max |per-image difference|"] = {
            m: float(np.max(np.abs(arrays[name][m] - arrays["run-quantised"][m]))) for m in METRICS}
    out["run-quantised - run-bicubic, mean"] = {
        m: float(runs["run-quantised"].metrics[m] - runs["run-bicubic"].metrics[m]) for m in METRICS}
    out["means"] = {name: {m: runs[name].metrics[m] for m in METRICS} for name in runs}
    print(json.dumps(out, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
