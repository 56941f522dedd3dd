"""Closed-set identification where every image is a probe against all others (celeba-knn)."""
from __future__ import annotations

import numpy as np

from benchmark.metrics.identification import cmc_leave_one_out, knn_leave_one_out
from benchmark.registry import TASKS
from benchmark.contracts.task import SelectionTask


@TASKS.register("loo-identification", summary="leave-one-out k-NN accuracy and CMC over SR faces")
class LeaveOneOutIdentification(SelectionTask):
    """Options: ``selection`` / ``selection_args`` (the dataset reader's method giving the
    FaceSet), ``ks`` (k of the k-NN accuracies), ``max_rank`` (CMC length). Every face is
    degraded and super-resolved; tie rules: ``benchmark.metrics.identification``.

    Metrics: ``knn<k>`` per k, ``rank1``, ``rank5``, ``rank10`` (CMC). Arrays: ``cmc``,
    ``probe_rank`` (rank of each probe's first correct match, for paired comparisons)."""

    OPTIONS = {**SelectionTask.OPTIONS, "ks": [1, 5, 10], "max_rank": 100}

    def score_level(self, hr_emb, emb):
        labels = self._faces.labels
        knn = knn_leave_one_out(emb, labels, self.options["ks"], device=self.scoring_device)
        cmc = cmc_leave_one_out(emb, labels, self.options["max_rank"], device=self.scoring_device)
        metrics = {f"knn{k}": v for k, v in knn.items()}
        metrics.update(rank_metrics(cmc.curve))
        return metrics, {"cmc": cmc.curve, "probe_rank": cmc.ranks}


def rank_metrics(curve: np.ndarray, ranks=(1, 5, 10)) -> dict:
    """``rank<r>`` = CMC at rank r, for the ranks the curve reaches."""
    return {f"rank{r}": float(curve[r - 1]) for r in ranks if r <= len(curve)}
