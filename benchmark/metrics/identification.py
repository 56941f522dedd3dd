"""Closed-set identification: leave-one-out kNN accuracy and CMC curves, and gallery/probe splits.

Conventions (the README's "Definitions", pinned by the design notes' "Metric definitions"):

- Similarity is the cosine of L2-normalised embedding rows (re-normalised here), computed in
  float32 like the embeddings themselves; higher = more alike.
- Leave-one-out: every image is a probe against all the others (never against itself).
- A probe's *mates* are the other images (gallery items) with its label.
- CMC tie rule, pessimistic ("ties count against"): the rank of a probe's first correct match is
  1 + (number of wrong-label items scoring >= its best mate score). No mate scores above the best
  mate, and mates tied with it do not count, so this equals 1 + (other items scoring strictly
  higher than the best mate) + (wrong-label items scoring exactly the same). CMC[r - 1] is the
  fraction of probes whose rank is <= r.
- kNN tie rules: neighbours are ordered by descending score, equal scores by ascending index
  (a stable order); the k nearest vote by majority, and a vote tie goes to the label whose best
  (earliest) neighbour ranks highest.

Embeddings, labels and indices may be NumPy arrays or torch tensors on any device (copied to the
CPU once, ``verification.as_array``; the results are identical). ``device`` (a torch device such
as "cuda") moves the score blocks' matrix products there (``benchmark.score_blocks``); the tie
rules and counting stay the NumPy code below.

Work is done in blocks of probe rows so memory stays O(block x N): the top-k comes from
``np.argpartition`` (a full sort only for rows with a tie at the k-th place) and CMC ranks are
counted, not sorted.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterable, Iterator, Tuple

import numpy as np

from benchmark.errors import MetricError
from benchmark.score_blocks import NUMPY, ScoreDevice, score_device
from benchmark.contracts.metric import MetricSpec, register_metric
from benchmark.metrics.verification import as_array

BLOCK_ROWS = 1024  # 1024 x 10,000 float32 scores = 40 MB per block


@dataclass(frozen=True)
class CmcResult:
    """A CMC curve and the per-probe ranks it was built from.

    ``curve[r - 1]`` is the fraction of counted probes whose first correct match is within the
    top r; ``ranks[i]`` is the rank of the first correct match of probe ``probe_index[i]``.
    ``n_excluded`` probes (leave-one-out: identities with a single image) have no possible
    correct match and are left out of the curve.
    """

    curve: np.ndarray
    ranks: np.ndarray
    probe_index: np.ndarray
    n_excluded: int

    @property
    def n_probes(self) -> int:
        return len(self.ranks)


def normalized_rows(embeddings: Any, name: str, metric: str) -> np.ndarray:
    """float32 copy of a 2-D embedding array with unit-length rows; refuses NaN, inf and zero rows."""
    array = np.asarray(as_array(embeddings))
    if array.ndim != 2 or array.shape[1] == 0:
        raise MetricError(f"{metric}: {name} must be a 2-D (N, D) array, got shape {array.shape}")
    if array.shape[0] == 0:
        raise MetricError(f"{metric}: {name} is empty (0 rows)")
    array = array.astype(np.float32)
    bad = np.flatnonzero(~np.isfinite(array).all(axis=1))
    if bad.size:
        raise MetricError(f"{metric}: {name} row {bad[0]} contains NaN or inf ({bad.size} such rows)")
    norms = np.linalg.norm(array, axis=1)
    zero = np.flatnonzero(norms == 0)
    if zero.size:
        raise MetricError(f"{metric}: {name} row {zero[0]} is all zeros; its cosine is undefined")
    return array / norms[:, None]


def checked_labels(labels: Any, n_rows: int, name: str, metric: str) -> np.ndarray:
    """Labels as a 1-D array after checking there is one per embedding row."""
    array = np.asarray(as_array(labels))
    if array.ndim != 1 or len(array) != n_rows:
        raise MetricError(
            f"{metric}: {name} must be 1-D with one label per embedding row ({n_rows}), "
            f"got shape {array.shape}"
        )
    return array


def label_codes(labels: Any, n_rows: int, name: str, metric: str) -> np.ndarray:
    """Labels (any comparable values) as int64 codes 0..L-1, one per embedding row."""
    array = checked_labels(labels, n_rows, name, metric)
    return np.unique(array, return_inverse=True)[1].astype(np.int64)


def _row_blocks(n_rows: int) -> Iterator[Tuple[int, int]]:
    for start in range(0, n_rows, BLOCK_ROWS):
        yield start, min(n_rows, start + BLOCK_ROWS)


def _nearest_neighbours(unit: np.ndarray, n_neighbours: int, device: ScoreDevice = NUMPY) -> np.ndarray:
    """(N, n_neighbours) indices of each row's nearest other rows, by descending score then index."""
    n = len(unit)
    neighbours = np.empty((n, n_neighbours), dtype=np.int64)
    rows_there = device.put(unit)
    for start, stop in _row_blocks(n):
        scores = device.scores(rows_there[start:stop], rows_there)
        rows = np.arange(stop - start)
        scores[rows, rows + start] = -np.inf  # never one's own neighbour
        top = np.argpartition(scores, n - n_neighbours, axis=1)[:, n - n_neighbours:]
        top.sort(axis=1)  # ascending index, so the stable sort below orders ties by index
        top_scores = np.take_along_axis(scores, top, axis=1)
        # argpartition picks arbitrarily among items tied at the k-th score: where more items
        # reach that score than were picked, take the exact stable order for that row.
        kth_score = top_scores.min(axis=1)
        reaching = np.count_nonzero(scores >= kth_score[:, None], axis=1)
        for row in np.flatnonzero(reaching > n_neighbours):
            top[row] = np.argsort(-scores[row], kind="stable")[:n_neighbours]
            top_scores[row] = scores[row, top[row]]
        order = np.argsort(-top_scores, axis=1, kind="stable")
        neighbours[start:stop] = np.take_along_axis(top, order, axis=1)
    return neighbours


def _majority_vote(neighbour_labels: np.ndarray) -> np.ndarray:
    """Per row, the most frequent label; ties go to the label that appears first in the row."""
    votes = (neighbour_labels[:, :, None] == neighbour_labels[:, None, :]).sum(axis=2)
    # argmax takes the first maximum: the earliest-ranked neighbour of a most-voted label.
    winner = np.argmax(votes, axis=1)
    return neighbour_labels[np.arange(len(neighbour_labels)), winner]


def knn_leave_one_out(embeddings: Any, labels: Any, ks: Iterable[int] = (1, 5, 10),
                      device: str | None = None) -> Dict[int, float]:
    """Leave-one-out k-nearest-neighbour identification accuracy for each k in ``ks``.

    Every image is a probe against all the others (cosine similarity). Its k nearest are
    ordered by descending score with equal scores by ascending index; they vote by majority
    and a vote tie goes to the label whose best neighbour ranks highest. Accuracy is the
    fraction of all images whose vote equals their own label: an image whose identity has no
    other image counts and is always wrong (protocols select identities with several images).
    """
    unit = normalized_rows(embeddings, "embeddings", "knn_leave_one_out")
    codes = label_codes(labels, len(unit), "labels", "knn_leave_one_out")
    k_values = [int(k) for k in ks]  # a 1-D tensor iterates as 0-d tensors: int() takes them
    if not k_values:
        raise MetricError("knn_leave_one_out: ks is empty")
    if min(k_values) < 1 or max(k_values) > len(unit) - 1:
        raise MetricError(
            f"knn_leave_one_out: every k must lie in 1..{len(unit) - 1} (N - 1), got {k_values}"
        )
    neighbour_labels = codes[_nearest_neighbours(unit, max(k_values), score_device(device))]
    return {k: float(np.mean(_majority_vote(neighbour_labels[:, :k]) == codes)) for k in k_values}


def _curve(ranks: np.ndarray, max_rank: int) -> np.ndarray:
    counts = np.bincount(np.minimum(ranks, max_rank + 1), minlength=max_rank + 2)
    return np.cumsum(counts[1:max_rank + 1]) / len(ranks)


def _checked_max_rank(max_rank: Any, metric: str) -> int:
    if int(max_rank) != max_rank or max_rank < 1:
        raise MetricError(f"{metric}: max_rank must be a positive integer, got {max_rank}")
    return int(max_rank)


def first_correct_match(gallery: np.ndarray, gallery_codes: np.ndarray, probes: np.ndarray,
                        probe_codes: np.ndarray, probe_offset: int | None = None,
                        device: ScoreDevice = NUMPY) -> Tuple[np.ndarray, np.ndarray]:
    """Each probe's best mate score and its pessimistic rank; (-inf, 0) for a probe without mates.

    ``gallery`` and ``probes`` are unit rows; ``gallery_codes`` must be sorted (ascending) so
    that each label's mates are one contiguous column range. The rank is 1 + the number of
    wrong-label gallery items scoring >= the best mate. ``probe_offset`` is not None in
    leave-one-out mode: probe i is gallery column probe_offset + i and never matches itself.
    Scores are computed in blocks of probes, so memory is O(block x gallery), their products
    on ``device``.
    """
    starts = np.searchsorted(gallery_codes, probe_codes, side="left")
    stops = np.searchsorted(gallery_codes, probe_codes, side="right")
    best_mate = np.full(len(probes), -np.inf, dtype=np.float32)
    ranks = np.zeros(len(probes), dtype=np.int64)
    gallery_there = device.put(gallery)
    probes_there = gallery_there if probes is gallery else device.put(probes)
    for start, stop in _row_blocks(len(probes)):
        scores = device.scores(probes_there[start:stop], gallery_there)
        if probe_offset is not None:
            rows = np.arange(stop - start)
            scores[rows, rows + probe_offset + start] = -np.inf
        block_best = best_mate[start:stop]
        mates_reaching = np.zeros(stop - start, dtype=np.int64)
        for row in range(stop - start):
            mates = scores[row, starts[start + row]:stops[start + row]]
            if mates.size:
                block_best[row] = mates.max()
                mates_reaching[row] = np.count_nonzero(mates >= block_best[row])
        reaching = np.count_nonzero(scores >= block_best[:, None], axis=1)
        has_mate = block_best > -np.inf  # scores are finite: only a missing mate leaves -inf
        ranks[start:stop] = np.where(has_mate, 1 + reaching - mates_reaching, 0)
    return best_mate, ranks


def cmc_leave_one_out(embeddings: Any, labels: Any, max_rank: int = 100, device: str | None = None) -> CmcResult:
    """Leave-one-out CMC to ``max_rank``: every image is a probe against all the others.

    Pessimistic tie rule (see the module docstring). Probes whose identity has no other image
    are excluded and counted in ``n_excluded``; MetricError if no probe has a mate.
    """
    unit = normalized_rows(embeddings, "embeddings", "cmc_leave_one_out")
    codes = label_codes(labels, len(unit), "labels", "cmc_leave_one_out")
    max_rank = _checked_max_rank(max_rank, "cmc_leave_one_out")
    # Label-sorted order makes each identity's mates a contiguous column range; ranks do not
    # depend on the order (no index tie-break in the pessimistic rule).
    order = np.argsort(codes, kind="stable")
    sorted_unit, sorted_codes = unit[order], codes[order]
    _, sorted_ranks = first_correct_match(sorted_unit, sorted_codes, sorted_unit, sorted_codes, 0,
                                          score_device(device))
    ranks = np.empty_like(sorted_ranks)
    ranks[order] = sorted_ranks
    counted = np.flatnonzero(ranks > 0)
    if counted.size == 0:
        raise MetricError(
            f"cmc_leave_one_out: none of the {len(unit)} images shares its label with another image"
        )
    return CmcResult(_curve(ranks[counted], max_rank), ranks[counted], counted, len(unit) - counted.size)


def cmc_gallery_probe(gallery_emb: Any, gallery_labels: Any, probe_emb: Any, probe_labels: Any,
                      max_rank: int = 100, device: str | None = None) -> CmcResult:
    """CMC of probes against a separate gallery (split protocols), pessimistic tie rule.

    Every probe's identity must be in the gallery (closed set): otherwise MetricError saying
    how many are not.
    """
    metric = "cmc_gallery_probe"
    gallery = normalized_rows(gallery_emb, "gallery_emb", metric)
    probes = normalized_rows(probe_emb, "probe_emb", metric)
    if gallery.shape[1] != probes.shape[1]:
        raise MetricError(
            f"{metric}: gallery embeddings have {gallery.shape[1]} dimensions, probes {probes.shape[1]}"
        )
    gallery_label_array = checked_labels(gallery_labels, len(gallery), "gallery_labels", metric)
    probe_label_array = checked_labels(probe_labels, len(probes), "probe_labels", metric)
    max_rank = _checked_max_rank(max_rank, metric)
    vocabulary, codes = np.unique(np.concatenate([gallery_label_array, probe_label_array]),
                                  return_inverse=True)
    gallery_codes, probe_codes = codes[:len(gallery)], codes[len(gallery):]
    unknown = ~np.isin(probe_codes, gallery_codes)
    if unknown.any():
        first = np.flatnonzero(unknown)[0]
        raise MetricError(
            f"{metric}: {int(unknown.sum())} of {len(probes)} probes have an identity that is not "
            f"in the gallery (first: probe {first}, label {vocabulary[probe_codes[first]]!r})"
        )
    order = np.argsort(gallery_codes, kind="stable")
    _, ranks = first_correct_match(gallery[order], gallery_codes[order], probes, probe_codes,
                                   device=score_device(device))
    return CmcResult(_curve(ranks, max_rank), ranks, np.arange(len(probes)), 0)


def gallery_probe_split(labels: Any, *, seed: int, repeat: int, n_gallery: int = 1,
                        min_images: int | None = None) -> Tuple[np.ndarray, np.ndarray]:
    """A seeded gallery/probe split: (gallery_index, probe_index), sorted indices into ``labels``.

    Only identities with >= ``min_images`` images take part (default n_gallery + 1, so that
    each has a probe). Of each, ``n_gallery`` images drawn uniformly at random go to the
    gallery and the rest are probes. The draw is deterministic: one uniform key per image
    from ``np.random.Generator(np.random.PCG64([seed, repeat]))``, and an identity's gallery
    images are its ``n_gallery`` smallest keys.
    """
    label_array = np.asarray(as_array(labels))
    if label_array.ndim != 1 or len(label_array) == 0:
        raise MetricError(f"gallery_probe_split: labels must be a non-empty 1-D array, got shape "
                          f"{label_array.shape}")
    if n_gallery < 1:
        raise MetricError(f"gallery_probe_split: n_gallery must be >= 1, got {n_gallery}")
    min_images = n_gallery + 1 if min_images is None else min_images
    if min_images < n_gallery + 1:
        raise MetricError(
            f"gallery_probe_split: min_images ({min_images}) must exceed n_gallery ({n_gallery}) "
            "so that every identity has a probe"
        )
    if seed < 0 or repeat < 0:
        raise MetricError(f"gallery_probe_split: seed and repeat must be >= 0, got {seed}, {repeat}")
    _, codes, counts = np.unique(label_array, return_inverse=True, return_counts=True)
    keys = np.random.Generator(np.random.PCG64([seed, repeat])).random(len(label_array))
    eligible = np.flatnonzero(counts[codes] >= min_images)
    if eligible.size == 0:
        raise MetricError(f"gallery_probe_split: no identity has {min_images} or more images")
    # Group by identity, each group by ascending key; the first n_gallery of a group are its gallery.
    grouped = eligible[np.lexsort((keys[eligible], codes[eligible]))]
    group_codes = codes[grouped]
    group_start = np.searchsorted(group_codes, group_codes, side="left")
    in_gallery = np.arange(len(grouped)) - group_start < n_gallery
    return np.sort(grouped[in_gallery]), np.sort(grouped[~in_gallery])


# Closed-set identification; rank-1 is paired per probe in comparisons.
register_metric(MetricSpec("rank1", "Rank-1 (%)", factor=100, digits=2, unit="%", std="rank1_std", per_item="probes",
                           summary="closed-set rank-1 identification rate"))
for _k in (5, 10):
    register_metric(MetricSpec(f"rank{_k}", f"Rank-{_k} (%)", factor=100, digits=2, unit="%", std=f"rank{_k}_std",
                               summary=f"closed-set rank-{_k} identification rate"))
    register_metric(MetricSpec(f"knn{_k}", f"{_k}-NN (%)", factor=100, digits=2, unit="%",
                               summary=f"leave-one-out {_k}-NN identification accuracy"))
register_metric(MetricSpec("knn1", "1-NN (%)", factor=100, digits=2, unit="%",
                           summary="leave-one-out 1-NN identification accuracy"))
