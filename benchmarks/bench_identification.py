"""BLUFR (10 trials) and leave-one-out kNN + CMC: benchmark.metrics versus straightforward NumPy.

    python benchmarks/bench_identification.py [--reference-trials 2] [--n-loo 10000] [--dim 512]
        [--device cuda] [--json PATH]

Features are random 512-d float32 rows, L2-normalised, with a per-identity centre added so that
the rates are neither 0 nor 1 (not real faces: the timings do not depend on what the scores say).

1. BLUFR over the real ../shared/data/lfw/blufr_lfw_config.mat (13,233 images) when present,
   else a synthetic config of the same sizes (10 trials of ~10,000 test images, a gallery of up to 1,000: as many identities as have two test images).
   benchmark.metrics.openset.blufr_trials (float32 blocks, top-k impostor selection, VR at
   FAR 0.1% and DIR at FAR 1% plus the default plot curves, then without the curves) runs first
   and its peak RSS is printed before the reference runs. The reference per trial: float64 full score matrix,
   lower triangle extracted, full np.sort of the impostor scores; gallery x probe float64 matrix,
   full sort of the impostor maxima. It runs on --reference-trials trials and is extrapolated to
   10 (printed as such). fhbench scores in float32, like the embeddings (the Definitions), so a
   VR or DIR may differ from the float64 reference, but only by the share of genuine pairs or
   probes whose outcome lies within FLOAT32_SLACK of a threshold or rank tie: the bench counts the
   values that differ and any that differ by more (a bug).
   Then the cost of VR curve grids reaching higher FARs, per trial.
2. Leave-one-out 1/5/10-NN + CMC to rank 100 over --n-loo embeddings versus a full float32 score
   matrix and a full stable np.argsort of every row.

``--device`` (e.g. cuda) runs the fhbench side's score-block products there
(``benchmark.score_blocks``); the references stay NumPy on the CPU. ``--json PATH`` writes
``blufr_s`` (with the curves), ``blufr_without_curves_s``, ``blufr_reference_s``, ``blufr_ratio``,
``blufr_identical``, ``blufr_differing_values``, ``blufr_beyond_float32_rounding``, ``loo_s``,
``loo_reference_s``, ``loo_ratio``, ``loo_identical``, ``device``.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections import Counter
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmark.faces.blufr import load_blufr_config
from benchmark.metrics.identification import cmc_leave_one_out, knn_leave_one_out  # noqa: E402
from benchmark.metrics.openset import (  # noqa: E402
    DIR_CURVE_FARS,
    VR_CURVE_FARS,
    blufr_trials,
    blufr_verification,
)

BLUFR_MAT = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw" / "blufr_lfw_config.mat"
VR_FARS, DIR_FARS = (0.001,), (0.01,)


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is KiB on Linux


def synthetic_config(seed: int = 0):
    """LFW-sized: 13,233 images of 5,749 identities (Zipf-like sizes), 10 trials of ~10,000 test
    images, each with a gallery of one image of up to 1,000 identities that have another test image."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, 5750) ** 1.1
    labels = rng.choice(5749, 13233, p=weights / weights.sum()) + 1
    tests, galleries, probes = [], [], []
    for _ in range(10):
        test = np.sort(rng.choice(13233, 10000, replace=False))
        ids, first, counts = np.unique(labels[test], return_index=True, return_counts=True)
        eligible = np.flatnonzero(counts >= 2)  # fewer than 1,000 identities may qualify
        chosen = rng.choice(eligible, min(1000, len(eligible)), replace=False)
        gallery = np.sort(test[first[chosen]])
        tests.append(test)
        galleries.append(gallery)
        probes.append(np.setdiff1d(test, gallery))
    return SimpleNamespace(image_list=[f"synthetic_{i:05d}.jpg" for i in range(13233)], labels=labels,
                           test_index=tests, gallery_index=galleries, probe_index=probes)


def identity_features(labels: np.ndarray, dim: int, signal: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((labels.max() + 1, dim), dtype=np.float32)
    features = rng.standard_normal((len(labels), dim), dtype=np.float32) + signal * centres[labels]
    return features / np.linalg.norm(features, axis=1, keepdims=True)


def matlab_round(x: float) -> int:
    return int(Decimal(x).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def reference_thresholds(impostor_desc: np.ndarray, fars) -> list:
    out = []
    for far in fars:
        k = matlab_round(far * len(impostor_desc))
        if k == 0:
            out.append(np.nextafter(impostor_desc[0], np.inf))
        elif k == len(impostor_desc):
            out.append(impostor_desc[-1])
        else:
            out.append(impostor_desc[k - 1])
    return out


# a score's float32 rounding error: a 512-term dot product of unit vectors is off by ~1e-7 at most
FLOAT32_SLACK = 1e-6


def reference_trial(features: np.ndarray, labels: np.ndarray, test, gallery, probes, vr_fars, dir_fars):
    """Straightforward BLUFR for one trial, float64, full matrices and full sorts: (VR, DIR) at
    each FAR, and beside each the share of genuine pairs (probes) whose outcome float32 rounding
    could flip: a score within FLOAT32_SLACK of the threshold (or a non-mate of the best mate)."""
    x = features[test].astype(np.float64)
    scores = x @ x.T
    lower = np.tril_indices(len(test), -1)
    pair_scores = scores[lower]
    same = labels[test][lower[0]] == labels[test][lower[1]]
    genuine = pair_scores[same]
    impostor_desc = np.sort(pair_scores[~same])[::-1]
    del scores, pair_scores, same
    vr_thresholds = reference_thresholds(impostor_desc, vr_fars)
    vr = [np.mean(genuine >= t) for t in vr_thresholds]
    vr_slack = [np.mean(np.abs(genuine - t) <= FLOAT32_SLACK) for t in vr_thresholds]

    g, p = features[gallery].astype(np.float64), features[probes].astype(np.float64)
    open_scores = p @ g.T
    mate = labels[probes][:, None] == labels[gallery][None, :]
    is_genuine = mate.any(axis=1)
    impostor_max_desc = np.sort(open_scores[~is_genuine].max(axis=1))[::-1]
    best_mate = np.where(mate, open_scores, -np.inf).max(axis=1)
    wrong_reaching = ((open_scores >= best_mate[:, None]) & ~mate).sum(axis=1)
    detected_rank1 = (wrong_reaching == 0)[is_genuine]
    dir_thresholds = reference_thresholds(impostor_max_desc, dir_fars)
    best = best_mate[is_genuine]
    dir_ = [np.mean(detected_rank1 & (best >= t)) for t in dir_thresholds]
    best_non_mate = np.where(mate, -np.inf, open_scores).max(axis=1)[is_genuine]
    rank_fragile = np.abs(best_non_mate - best) <= FLOAT32_SLACK
    dir_slack = [np.mean(rank_fragile | (np.abs(best - t) <= FLOAT32_SLACK)) for t in dir_thresholds]
    return np.array(vr), np.array(dir_), np.array(vr_slack), np.array(dir_slack)


def bench_blufr(args) -> dict:
    if BLUFR_MAT.is_file():
        config, source = load_blufr_config(BLUFR_MAT), f"real BLUFR config {BLUFR_MAT}"
    else:
        config, source = synthetic_config(), "synthetic LFW-sized config (real one not found)"
    labels = np.asarray(config.labels)
    features = identity_features(labels, args.dim, args.signal, seed=1)
    sizes = [len(t) for t in config.test_index]
    print(f"BLUFR, {len(labels)} images x {args.dim}-d float32, {source}")
    print(f"  10 trials, test sets {min(sizes)}..{max(sizes)} images "
          f"(~{np.mean(sizes) * (np.mean(sizes) - 1) / 2 / 1e6:.0f} M pairs each), "
          f"gallery {len(config.gallery_index[0])}")

    start = time.perf_counter()
    result = blufr_trials(features, labels, config, VR_FARS, DIR_FARS, device=args.device)
    fast_seconds = time.perf_counter() - start
    fast_rss = peak_rss_gib()
    print(f"  benchmark.metrics.openset.blufr_trials: {fast_seconds:.2f} s for 10 trials "
          f"(VR@{VR_FARS[0]:g}, DIR@{DIR_FARS[0]:g} + {len(VR_CURVE_FARS)}-point VR and "
          f"{len(DIR_CURVE_FARS)}-point DIR curves); peak RSS so far {fast_rss:.2f} GiB")
    start = time.perf_counter()
    blufr_trials(features, labels, config, VR_FARS, DIR_FARS, vr_curve_fars=(), dir_curve_fars=(),
                 device=args.device)
    plain_seconds = time.perf_counter() - start
    print(f"  the same without the curves (VR@{VR_FARS[0]:g} and DIR@{DIR_FARS[0]:g} only): "
          f"{plain_seconds:.2f} s for 10 trials")
    for name, summary in (("VR@0.1% ", result.vr_summary), ("DIR@1%  ", result.dir_summary)):
        print(f"  {name} mean-std {summary.mean_minus_std[0] * 100:.2f} %  "
              f"(mean {summary.mean[0] * 100:.2f}, std {summary.std[0] * 100:.2f}, ddof=1)")

    vr_fars = list(VR_FARS) + list(VR_CURVE_FARS)
    dir_fars = list(DIR_FARS) + list(DIR_CURVE_FARS)
    fast_vr = np.c_[result.vr, result.vr_curve]
    fast_dir = np.c_[result.dir, result.dir_curve]
    n_ref = args.reference_trials
    start = time.perf_counter()
    mismatches = beyond = 0
    largest = 0.0
    for t in range(n_ref):
        vr, dir_, vr_slack, dir_slack = reference_trial(features, labels, config.test_index[t],
                                                        config.gallery_index[t], config.probe_index[t],
                                                        vr_fars, dir_fars)
        for ref, fast, slack in ((vr, fast_vr[t], vr_slack), (dir_, fast_dir[t], dir_slack)):
            diff = np.abs(fast - ref)
            mismatches += int(np.sum(diff > 0))
            beyond += int(np.sum(diff > slack + 1e-12))
            largest = max(largest, float(diff.max()))
    ref_seconds = (time.perf_counter() - start) * 10 / n_ref
    print(f"  straightforward NumPy (float64 full matrix, full np.sort): {ref_seconds:.2f} s for 10 "
          f"trials (measured on {n_ref}, x {10 / n_ref:g}); peak RSS {peak_rss_gib():.2f} GiB")
    total = n_ref * (len(vr_fars) + len(dir_fars))
    if mismatches == 0:
        agreement = "identical"
    elif beyond == 0:
        agreement = (f"{mismatches} of {total} values differ (largest {largest:.2g}), each by no more than the "
                     f"share of scores within float32 rounding of its threshold or rank tie")
    else:
        agreement = f"{beyond} of {total} values DIFFER BEYOND float32 rounding (largest {largest:.2g})"
    print(f"  ratio {ref_seconds / fast_seconds:.1f}x; VR and DIR at all {len(vr_fars)} + "
          f"{len(dir_fars)} FARs on the {n_ref} reference trials: {agreement}")

    print("  VR cost per trial (trial 1) by the FARs asked for (every point exact):")
    grids = [("VR@0.1% only", VR_FARS), ("1e-4..1e-2, 9 points", 10.0 ** np.linspace(-4, -2, 9)),
             ("default grid (1e-4..1e-1 and 1)", VR_CURVE_FARS),
             ("full 1e-4..1, 17 points", 10.0 ** np.linspace(-4, 0, 17))]
    for name, fars in grids:
        start = time.perf_counter()
        blufr_verification(features, labels, config.test_index[0], fars, device=args.device)
        print(f"    {name:<34}{time.perf_counter() - start:>7.2f} s")
    return {"blufr_s": fast_seconds, "blufr_without_curves_s": plain_seconds, "blufr_reference_s": ref_seconds,
            "blufr_ratio": ref_seconds / fast_seconds, "blufr_identical": mismatches == 0,
            "blufr_differing_values": mismatches, "blufr_beyond_float32_rounding": beyond}


def reference_loo(features: np.ndarray, labels: np.ndarray, ks, max_rank: int):
    """Full score matrix, full stable argsort per row; the first mate's position in that order
    is the rank (the pessimistic rule agrees: continuous random features have no tied scores)."""
    scores = features @ features.T
    np.fill_diagonal(scores, -np.inf)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :-1]  # self (-inf) sorts last
    ordered_labels = labels[order]
    accuracy = {}
    for k in ks:
        votes = [Counter(row[:k].tolist()) for row in ordered_labels]
        # Most votes; among equals, the label seen first in the row (Counter keeps first-seen order).
        predicted = np.array([max(v.items(), key=lambda item: item[1])[0] for v in votes])
        accuracy[k] = float(np.mean(predicted == labels))
    is_mate = ordered_labels == labels[:, None]
    has_mate = is_mate.any(axis=1)
    ranks = np.argmax(is_mate, axis=1)[has_mate] + 1
    cmc = np.array([np.mean(ranks <= r) for r in range(1, max_rank + 1)])
    return accuracy, cmc


def bench_loo(args) -> dict:
    n = args.n_loo
    labels = np.arange(n) % (n // 20)  # 20 images per identity
    features = identity_features(labels, args.dim, args.signal, seed=2)
    print(f"\nLeave-one-out 1/5/10-NN + CMC to rank 100, {n} embeddings x {args.dim}-d float32")
    start = time.perf_counter()
    accuracy = knn_leave_one_out(features, labels, (1, 5, 10), device=args.device)
    cmc = cmc_leave_one_out(features, labels, 100, device=args.device)
    fast_seconds = time.perf_counter() - start
    print(f"  benchmark.metrics.identification (blocks, argpartition, counted ranks): "
          f"{fast_seconds:.2f} s")
    start = time.perf_counter()
    ref_accuracy, ref_cmc = reference_loo(features, labels, (1, 5, 10), 100)
    ref_seconds = time.perf_counter() - start
    print(f"  straightforward (full matrix, full np.argsort per row): {ref_seconds:.2f} s")
    same = accuracy == ref_accuracy and np.array_equal(cmc.curve, ref_cmc)
    print(f"  ratio {ref_seconds / fast_seconds:.1f}x; kNN and CMC "
          + ("identical" if same else "DIFFER"))
    print("  " + ", ".join(f"{k}-NN {v * 100:.2f} %" for k, v in accuracy.items())
          + f", CMC rank 1 / 10 / 100: {cmc.curve[0] * 100:.2f} / {cmc.curve[9] * 100:.2f} / "
            f"{cmc.curve[99] * 100:.2f} %")
    return {"loo_s": fast_seconds, "loo_reference_s": ref_seconds, "loo_ratio": ref_seconds / fast_seconds,
            "loo_identical": bool(same)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference-trials", type=int, default=2,
                        help="trials the slow reference runs (1..10)")
    parser.add_argument("--n-loo", type=int, default=10000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--signal", type=float, default=0.4,
                        help="identity-centre weight in the features")
    parser.add_argument("--device", default=None,
                        help="torch device for fhbench's score-block products (default: NumPy on the CPU)")
    parser.add_argument("--json", default=None, metavar="PATH", help="write the headline figures here")
    args = parser.parse_args()
    print(f"fhbench score blocks on: {args.device or 'NumPy (CPU)'}")
    figures = {**bench_blufr(args), **bench_loo(args), "device": args.device}
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
