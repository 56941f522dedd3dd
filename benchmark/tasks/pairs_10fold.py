"""Pair verification with the LFW View 2 protocol: 10 folds, threshold chosen on 9."""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ..metrics.verification import eer, roc_auc, ten_fold_accuracy
from ..registry import DATASETS, TASKS

PAIR_MODES = ("sr-sr", "sr-hr")


@TASKS.register("pairs-10fold", summary="10-fold pair verification: accuracy +- std, AUC, EER")
class PairsTenFold:
    def __init__(self, protocol, data_root):
        opts = dict(protocol.options)
        self.pair_mode = opts.pop("pair_mode", "sr-sr")
        pairs_file = opts.pop("pairs_file", "pairs.txt")
        if opts:
            raise ConfigError(f"protocol {protocol.name}: unknown option(s) {', '.join(opts)} for pairs-10fold")
        if self.pair_mode not in PAIR_MODES:
            raise ConfigError(f"protocol {protocol.name}: pair_mode must be one of {PAIR_MODES}")
        self.pairs = DATASETS.get(protocol.dataset)(data_root).pairs(pairs_file)

    def faces(self):
        return self.pairs.faces

    def pair_scores(self, sr_emb, hr_emb) -> np.ndarray:
        """Cosine similarity of L2-normalised embeddings (float64 accumulation)."""
        right = sr_emb if self.pair_mode == "sr-sr" else hr_emb
        a = sr_emb[self.pairs.left].astype(np.float64)
        b = right[self.pairs.right].astype(np.float64)
        return np.einsum("ij,ij->i", a, b)

    def score(self, sr_emb, hr_emb):
        p = self.pairs
        scores = self.pair_scores(sr_emb, hr_emb)
        tenfold = ten_fold_accuracy(scores, p.is_same, p.fold)
        eer_value, _ = eer(scores, p.is_same)
        metrics = {"accuracy": tenfold.mean, "accuracy_std": tenfold.std,
                   "auc": roc_auc(scores, p.is_same), "eer": eer_value}
        arrays = {"pair_scores": scores, "pair_is_same": p.is_same, "pair_fold": p.fold,
                  "fold_accuracy": tenfold.accuracies, "fold_threshold": tenfold.thresholds}
        return metrics, arrays
