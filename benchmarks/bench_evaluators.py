"""Face-recognition evaluators' speed per backend, against onnxruntime (the reference), on real
LFW faces.

    python benchmarks/bench_evaluators.py [--data-root ../shared/data/lfw] [--n 1000]
        [--evaluators sface,arcface-mbf] [--backends onnxruntime,onnxruntime-fast,torch]
        [--device cpu] [--repeat 3] [--json PATH]

For each evaluator and backend: faces/s of ``embed`` (the crop warp, the pixel feed and the
network, batches of 64) over ``--n`` aligned LFW faces (synthetic smooth faces when the data is
absent, said in the output), the best of ``--repeat`` passes after one warm-up batch; the ratio
to onnxruntime's faces/s in the same run; and the largest absolute difference of the
L2-normalised embeddings from onnxruntime's. ``--json PATH`` writes, per evaluator and
backend, ``faces_per_s``, ``ratio_vs_onnxruntime`` and ``max_abs_diff``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmark.evaluators import create_evaluator  # noqa: E402
from benchmark.faces.templates import SPHEREFACE_112x96  # noqa: E402


def faces_of(data_root: Path, n: int):
    """n aligned LFW faces spread over the sorted image list, or synthetic ones; and a label."""
    files = sorted((data_root / "aligned-112x96").glob("*/*.jpg"))
    if len(files) >= n:
        from benchmark.faces.images import read_batch

        pick = np.linspace(0, len(files) - 1, n).round().astype(int)
        return read_batch([files[i] for i in pick]), f"{n} real LFW faces from {data_root}"
    import cv2

    rng = np.random.default_rng(0)
    small = rng.random((n, 14, 12, 3)).astype(np.float32)
    faces = np.stack([cv2.resize(s, (96, 112), interpolation=cv2.INTER_CUBIC).transpose(2, 0, 1) for s in small])
    return np.clip(faces, 0, 1), f"{n} synthetic faces ({data_root} has no aligned LFW)"


def speed(evaluator, faces: np.ndarray, repeat: int):
    evaluator.embed(faces[:64], SPHEREFACE_112x96)  # warm-up: sessions and kernels
    best, out = np.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        out = evaluator.embed(faces, SPHEREFACE_112x96)
        best = min(best, time.perf_counter() - start)
    return len(faces) / best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data" / "lfw"))
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--evaluators", default="sface,arcface-mbf")
    ap.add_argument("--backends", default="onnxruntime,onnxruntime-fast,torch")
    ap.add_argument("--device", default="cpu", help="the torch backend's device")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", default=None, metavar="PATH")
    args = ap.parse_args()
    faces, label = faces_of(Path(args.data_root), args.n)
    backends = ["onnxruntime"] + [b for b in args.backends.split(",") if b != "onnxruntime"]
    print(f"evaluators' embed on {label}, batches of 64, best of {args.repeat}")
    print(f"  {'evaluator':<14}{'backend':<19}{'faces/s':>9}{'ratio':>8}   max |diff| vs onnxruntime")
    figures = {}
    for name in args.evaluators.split(","):
        reference_rate, reference = None, None
        for backend in backends:
            evaluator = create_evaluator(name, batch_size=64, device=args.device, backend=backend)
            rate, emb = speed(evaluator, faces, args.repeat)
            if reference is None:
                reference_rate, reference = rate, emb
            diff = float(np.abs(emb - reference).max())
            figures.setdefault(name, {})[backend] = {"faces_per_s": rate, "ratio_vs_onnxruntime": rate / reference_rate,
                                                     "max_abs_diff": diff}
            print(f"  {name:<14}{backend:<19}{rate:>9.1f}{rate / reference_rate:>7.2f}x   {diff:.2e}")
    print("  (ratio = faces/s / onnxruntime's faces/s in this run)")
    if args.json:
        Path(args.json).write_text(json.dumps({"faces": label, **figures}, indent=2) + "\n")


if __name__ == "__main__":
    main()
