"""BLUFR, 10 trials: the shared score-matrix pass (``blufr_trials`` now) versus the per-trial path
it replaced (each trial recomputing its own ~47 M verification scores).

    python benchmarks/bench_blufr.py [--dim 512] [--signal 0.5] [--json PATH]

Config: the real ../shared/data/lfw/blufr_lfw_config.mat (13,233 images, 10 trials) when present,
else a synthetic config of the same structure (13,233 images of 5,749 identities, 10 trials of
10,000 test images with a gallery of up to 1,000 images). Features: random float32 rows around one centre
per identity (not real faces; the timings do not depend on what the scores say). Both paths run
with the default FARs and curves (VR at FAR 0.1 % and DIR at 1 %, plus the plot grids); they must
give identical results in every field, and the script says so. Prints both wall times (and the
process CPU times: on a shared machine the wall time also counts waiting for a core) and the
ratio, for the whole of BLUFR and for its verification part alone (the part the shared pass
changes; the open-set part is the same code in both); ``--json PATH`` writes ``old_s``,
``new_s``, ``ratio`` (whole BLUFR, wall), ``old_cpu_s``, ``new_cpu_s``, ``verification_old_s``,
``verification_new_s``, ``verification_ratio``, ``identical``, ``config``, ``n_images``,
``n_trials``, ``dim``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmark.metrics.identification import label_codes  # noqa: E402
from benchmark.metrics.openset import (  # noqa: E402
    DIR_CURVE_FARS, VR_CURVE_FARS, _verification_all_trials, blufr_open_set, blufr_trials, blufr_verification)

from bench_identification import synthetic_config  # noqa: E402  (the same LFW-sized synthetic config)

VR_POINTS = np.r_[0.001, VR_CURVE_FARS]
DIR_POINTS = np.r_[0.01, DIR_CURVE_FARS]

BLUFR_MAT = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw" / "blufr_lfw_config.mat"


def features_for(labels, dim: int, signal: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    _, codes = np.unique(labels, return_inverse=True)
    centres = rng.standard_normal((codes.max() + 1, dim), dtype=np.float32)
    return rng.standard_normal((len(labels), dim), dtype=np.float32) + signal * centres[codes]


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--signal", type=float, default=0.5, help="weight of the identity centre in each row")
    ap.add_argument("--json", default=None, metavar="PATH", help="write the headline figures here")
    args = ap.parse_args()

    if BLUFR_MAT.is_file():
        from benchmark.faces.blufr import load_blufr_config

        config, kind = load_blufr_config(BLUFR_MAT), "real"
    else:
        config, kind = synthetic_config(), "synthetic"
    features = features_for(config.labels, args.dim, args.signal)
    n_trials = len(config.test_index)
    print(f"BLUFR config: {kind} ({len(config.image_list):,} images, {n_trials} trials, "
          f"~{int(np.mean([len(t) for t in config.test_index])):,} test images each), {args.dim}-d float32")

    labels = config.labels
    # the previous blufr_trials: one verification pass and one open-set pass per trial
    vr_old, vr_old_s, vr_old_cpu = timed(lambda: np.array(
        [blufr_verification(features, labels, t, VR_POINTS) for t in config.test_index]))
    dir_old, dir_old_s, dir_old_cpu = timed(lambda: np.array(
        [blufr_open_set(features, labels, g, p, DIR_POINTS) for g, p in zip(config.gallery_index, config.probe_index)]))
    old_s, old_cpu = vr_old_s + dir_old_s, vr_old_cpu + dir_old_cpu
    new, new_s, new_cpu = timed(lambda: blufr_trials(features, labels, config))
    codes = label_codes(labels, len(features), "labels", "bench")
    vr_shared, vr_new_s, vr_new_cpu = timed(lambda: _verification_all_trials(features, codes, config.test_index,
                                                                             VR_POINTS))

    vr_new = np.concatenate([new.vr, new.vr_curve], axis=1)
    dir_new = np.concatenate([new.dir, new.dir_curve], axis=1)
    identical = bool(np.array_equal(vr_new, vr_old) and np.array_equal(dir_new, dir_old)
                     and np.array_equal(vr_shared, vr_old))
    print(f"VR@0.1% mean {new.vr_summary.mean[0]:.4f}, DIR@1% mean {new.dir_summary.mean[0]:.4f}")
    print(f"{'':28} {'wall s':>8} {'cpu s':>8}")
    print(f"{'BLUFR, per-trial (old)':28} {old_s:8.2f} {old_cpu:8.2f}")
    print(f"{'BLUFR, shared pass (new)':28} {new_s:8.2f} {new_cpu:8.2f}   ratio {old_s / new_s:.2f}x wall, "
          f"{old_cpu / new_cpu:.2f}x cpu")
    print(f"{'  verification, per-trial':28} {vr_old_s:8.2f} {vr_old_cpu:8.2f}")
    print(f"{'  verification, shared':28} {vr_new_s:8.2f} {vr_new_cpu:8.2f}   ratio {vr_old_s / vr_new_s:.2f}x wall, "
          f"{vr_old_cpu / vr_new_cpu:.2f}x cpu")
    print(f"{'  open set (same code)':28} {dir_old_s:8.2f} {dir_old_cpu:8.2f}")
    print(f"results identical in every trial and FAR: {identical}")
    if args.json:
        out = {"old_s": old_s, "new_s": new_s, "ratio": old_s / new_s, "old_cpu_s": old_cpu, "new_cpu_s": new_cpu,
               "verification_old_s": vr_old_s, "verification_new_s": vr_new_s,
               "verification_ratio": vr_old_s / vr_new_s, "identical": identical, "config": kind,
               "n_images": len(config.image_list), "n_trials": n_trials, "dim": args.dim}
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.json}")
    if not identical:
        sys.exit(1)


if __name__ == "__main__":
    main()
