"""Pair verification in 10 folds, threshold chosen on 9 (LFW View 2; CelebA's drawn pairs)."""
from __future__ import annotations

import numpy as np

from benchmark.errors import ConfigError, DataError
from benchmark.metrics.verification import N_FOLDS, roc_auc_and_eer, ten_fold_accuracy
from benchmark.registry import TASKS
from benchmark.contracts.task import Task, selected

PAIR_MODES = ("sr-sr", "sr-hr")


def check_folds(pairs, where: str) -> None:
    """What ``ten_fold_accuracy`` needs of the list, checked when the task is built, before any
    image is read: fold numbers exactly 0..9, each fold with genuine and impostor pairs, and
    pair indices that are faces of the set. A DataError naming the list otherwise."""
    source = getattr(pairs, "source", None) or "the pair list"
    fold = np.asarray(pairs.fold)
    same = np.asarray(pairs.is_same)
    left, right = np.asarray(pairs.left), np.asarray(pairs.right)
    n = len(fold)
    if n == 0:
        raise DataError(f"{where}: {source} holds no pairs")
    if not (same.shape == left.shape == right.shape == (n,)) or not np.issubdtype(fold.dtype, np.integer):
        raise DataError(f"{where}: {source}: pairs, labels and folds disagree in length or type")
    n_faces = len(pairs.faces)
    for side in (left, right):
        if side.size and (side.min() < 0 or side.max() >= n_faces):
            raise DataError(f"{where}: {source}: a pair names a face outside the {n_faces} of its set")
    found = sorted(set(fold.tolist()))
    if found != list(range(N_FOLDS)):
        raise DataError(f"{where}: {source} has {len(found)} folds ({', '.join(str(f + 1) for f in found)}); "
                        f"10-fold verification needs folds 1..{N_FOLDS}, each with pairs")
    for f in range(N_FOLDS):
        here = same[fold == f]
        if here.all() or not here.any():
            kind = "impostor" if here.all() else "genuine"
            raise DataError(f"{where}: {source}: fold {f + 1} has no {kind} pairs")


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
        check_folds(self.pairs, f"protocol {protocol.name}")

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
        auc, equal_error = roc_auc_and_eer(scores, p.is_same)
        metrics = {"accuracy": tenfold.mean, "accuracy_std": tenfold.std, "auc": auc, "eer": equal_error.rate}
        arrays = {"pair_scores": scores, "pair_is_same": p.is_same, "pair_fold": p.fold,
                  "fold_accuracy": tenfold.accuracies, "fold_threshold": tenfold.thresholds}
        return metrics, arrays
