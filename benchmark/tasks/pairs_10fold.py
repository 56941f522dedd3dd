"""Pair verification in 10 folds, threshold chosen on 9 (LFW View 2; CelebA's drawn pairs)."""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ..metrics.verification import eer, roc_auc, ten_fold_accuracy
from ..registry import TASKS
from .base import Task, selected

PAIR_MODES = ("sr-sr", "sr-hr")


@TASKS.register("pairs-10fold", summary="10-fold pair verification: accuracy +- std, AUC, EER")
class PairsTenFold(Task):
    """Options: ``pairs`` (the dataset's pair selection: a method of its reader, e.g. LFW's
    ``pairs`` or CelebA's ``verification_pairs``), ``pairs_args`` (its keyword arguments),
    ``pair_mode`` (sr-sr: both faces of a pair super-resolved; sr-hr: left SR, right HR)."""

    OPTIONS = {"pairs": "pairs", "pairs_args": {}, "pair_mode": "sr-sr"}

    def __init__(self, protocol, data_root):
        super().__init__(protocol, data_root)
        if self.options["pair_mode"] not in PAIR_MODES:
            raise ConfigError(f"protocol {protocol.name}: pair_mode must be one of {PAIR_MODES}")
        self.pairs = selected(self, "pairs")

    def faces(self):
        return self.pairs.faces

    def pair_scores(self, hr_emb, emb) -> np.ndarray:
        """Cosine similarity of L2-normalised embeddings (float64 accumulation)."""
        right = emb if self.options["pair_mode"] == "sr-sr" else hr_emb
        a = emb[self.pairs.left].astype(np.float64)
        b = right[self.pairs.right].astype(np.float64)
        return np.einsum("ij,ij->i", a, b)

    def score_level(self, hr_emb, emb):
        p = self.pairs
        scores = self.pair_scores(hr_emb, emb)
        tenfold = ten_fold_accuracy(scores, p.is_same, p.fold)
        eer_value, _ = eer(scores, p.is_same)
        metrics = {"accuracy": tenfold.mean, "accuracy_std": tenfold.std,
                   "auc": roc_auc(scores, p.is_same), "eer": eer_value}
        arrays = {"pair_scores": scores, "pair_is_same": p.is_same, "pair_fold": p.fold,
                  "fold_accuracy": tenfold.accuracies, "fold_threshold": tenfold.thresholds}
        return metrics, arrays
