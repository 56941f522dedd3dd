"""The numbers of a free-form score: per-image values, their summaries, and the label metrics.

Means with missing SR files (``--allow-missing``): a missing file has NaN in every per-image
array (so two scores of one set stay aligned image by image); each mean and std is over the
images that were scored, and every summary states ``n_scored`` and ``n_missing`` beside it.
Nothing is ever divided by a file that was not scored. A metric that could not measure a
scored image (a landmark detector finding no face) is NaN there too, left out of its mean and
counted in ``n_failed`` (and ``<metric>_n_failed``).

With labels (``--labels``), per evaluator:

- ``rank1``: each scored SR face is a probe against the gallery of every HR face except its
  own HR image (so a probe needs another image of its identity: the rest are not probes,
  counted in ``rank1_n_no_mate``); rank 1 when the best-scoring gallery face of its identity
  beats every other identity's (ties count against it: ``first_correct_match``).
- ``auc`` and ``eer``: verification on every pair of scored SR faces (i < j), cosine score,
  genuine when the two carry one identity; at most ``MAX_VERIFICATION_IMAGES`` images.
"""
from __future__ import annotations

import math
from typing import Dict, List

import numpy as np

from benchmark.errors import ConfigError, DataError
from benchmark.metrics.identification import first_correct_match, label_codes
from benchmark.metrics.image import summarize
from benchmark.metrics.verification import roc_auc_and_eer

MAX_VERIFICATION_IMAGES = 6000   # 18M pairs: about 150 MB of scores, sorted once
LABEL_METRICS = ("rank1", "auc", "eer")


def summary(values: np.ndarray, scored: np.ndarray, counts_inf: bool) -> Dict[str, float]:
    """Mean, std and counts of one per-image array over the scored images (see module notes)."""
    v = np.asarray(values, dtype=np.float64)[scored]
    failed = np.isnan(v)
    out = {"n_scored": int(scored.sum()), "n_missing": int((~scored).sum()), "n_failed": int(failed.sum())}
    if (~failed).any():
        s = summarize(v[~failed])
        out.update(mean=s["mean"], std=s["std"], n=s["n"])
        if counts_inf:
            out.update(n_inf=s["n_inf"], mean_finite=s["mean_finite"])
    else:
        out.update(mean=math.nan, std=math.nan, n=0)
    return out


def label_metrics(sr_emb: np.ndarray, hr_emb: np.ndarray, labels: List[str], scored: np.ndarray):
    """({rank1, auc, eer and counts}, {"probe_rank": ranks of the probes}) for unit rows of
    every pair (a missing SR row is ignored) and each pair's identity."""
    codes = label_codes(np.asarray(labels), len(labels), "labels", "labels")
    order = np.argsort(codes, kind="stable")  # first_correct_match wants the gallery sorted by label
    gallery, g_codes = hr_emb[order], codes[order]
    probes = np.where(scored[:, None], sr_emb, hr_emb)[order]
    _, ranks = first_correct_match(gallery, g_codes, probes, g_codes, probe_offset=0)
    ranks_in_pair_order = np.empty_like(ranks)
    ranks_in_pair_order[order] = ranks
    is_probe = scored & (ranks_in_pair_order > 0)
    metrics = {"rank1_n_probes": int(is_probe.sum()), "rank1_n_no_mate": int((scored & (ranks_in_pair_order == 0)).sum())}
    arrays = {}
    if is_probe.any():
        probe_rank = ranks_in_pair_order[is_probe]
        metrics["rank1"] = float(np.mean(probe_rank == 1))
        arrays["probe_rank"] = probe_rank
    idx = np.flatnonzero(scored)
    if len(idx) > MAX_VERIFICATION_IMAGES:
        raise ConfigError(f"--labels: verification over every pair of {len(idx)} SR faces is limited to "
                          f"{MAX_VERIFICATION_IMAGES} faces")
    iu = np.triu_indices(len(idx), k=1)
    scores = (sr_emb[idx] @ sr_emb[idx].T)[iu]
    same = (codes[idx][:, None] == codes[idx][None, :])[iu]
    metrics["verification_n_pairs"] = int(len(scores))
    if same.any() and (~same).any():
        auc, equal_error = roc_auc_and_eer(scores, same)
        metrics["auc"], metrics["eer"] = auc, equal_error.rate
    elif len(scores):
        raise DataError("--labels: verification needs pairs of one identity and pairs of two among the scored "
                        f"SR faces; these have only {'genuine' if same.all() else 'impostor'} pairs")
    return metrics, arrays
