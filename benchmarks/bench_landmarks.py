"""The landmark stage (LMD / NME) on real LFW faces: images per second of each backend, and
the LMD and NME of bicubic at x2, x4, x8 and of the blind degradation at x8.

    python benchmarks/bench_landmarks.py [--data-root ../shared/data/lfw] [--n-images 500]
        [--json PATH]

The faces: the first --n-images images (sorted paths) of aligned-112x96, the run's frame
(112x96). For each level the SR image is what `fhbench run --model bicubic` returns (MATLAB
bicubic down, 8-bit, bicubic up, clipped); the blind LR is drawn per image from its content
key as in a run. Timed: the metric call (landmarks of SR and HR, distances) per backend,
single process, CPU. Faces where dlib's HOG detector finds no face in the HR are counted.
"""
import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout, not whichever fhbench is installed

from benchmark.contracts.degradation import make_degradation  # noqa: E402
from benchmark.faces.images import read_batch  # noqa: E402
from benchmark.faces.resize import upsample_bicubic  # noqa: E402
from benchmark.metrics import landmarks as L  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw"))
    ap.add_argument("--n-images", type=int, default=500)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    paths = sorted((Path(args.data_root) / "aligned-112x96").glob("*/*.jpg"))[: args.n_images]
    hr = read_batch(paths)
    keys = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    rows = []
    for label, deg in (("x2", make_degradation("bicubic", scale=2)), ("x4", make_degradation("bicubic", scale=4)),
                       ("x8", make_degradation("bicubic", scale=8)), ("blind x8", make_degradation("blind", scale=8))):
        lr = deg(hr, keys=keys) if label.startswith("blind") else deg(hr)
        sr = np.clip(upsample_bicubic(lr, hr.shape[-2:]), 0, 1).astype(np.float32)
        for backend in L.BACKENDS:
            t0 = time.perf_counter()
            lmd, nme = L._distances(backend, sr, hr)
            dt = time.perf_counter() - t0
            ok = ~np.isnan(lmd)
            rows.append({"level": label, "backend": backend, "n": len(hr), "n_failed": int((~ok).sum()),
                         "lmd_px": float(lmd[ok].mean()), "nme": float(nme[ok].mean()),
                         "images_per_s": len(hr) / dt})
            r = rows[-1]
            print(f"{label:>9} {backend:>7}: LMD {r['lmd_px']:.3f} px, NME {r['nme']:.4f}, "
                  f"failed {r['n_failed']}/{r['n']}, {r['images_per_s']:.1f} images/s (SR+HR pairs)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
