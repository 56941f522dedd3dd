"""One chunk of a run's plan into results: HR faces -> HR embeddings -> per level: LR -> SR ->
per-image metrics -> SR embeddings. ``runner._compute_missing`` (which caches the results) and
``cluster.compute_shard`` (which returns them to the client) both call ``process_chunk``, so the
two paths cannot drift apart.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np


@dataclass
class ChunkResult:
    hr_emb: np.ndarray                          # embeddings of the HR rows asked for, in their order
    sr: Dict[str, Tuple[np.ndarray, dict]]      # level -> (its image indices, {"emb", <metric>: values})


def process_chunk(pipeline, levels, hr, need: np.ndarray, hr_rows: np.ndarray,
                  sr_indices: Dict[str, np.ndarray], row_keys: Sequence[str], row_names: Sequence[str],
                  on_hr_emb: Callable[[List[str], np.ndarray], None],
                  known_hr_emb: Callable[[List[str]], np.ndarray]) -> ChunkResult:
    """The results of one chunk.

    ``hr``: the faces of the images ``need`` (row r is face-set index ``need[r]``, content key
    ``row_keys[r]``, relative path ``row_names[r]``), as loaded; ``hr_rows``: the rows whose HR
    embedding to compute, handed to ``on_hr_emb(keys, embeddings)`` before any SR work;
    ``sr_indices``: per level name, the face-set indices (whole SR batches, all in ``need``) to
    super-resolve. ``known_hr_emb(keys)`` returns the HR embeddings of the SR images (identical
    SR images reuse them), once per chunk for all its levels."""
    hr = pipeline.to_device(hr)  # once for the HR embeddings and every level
    rows = np.asarray(hr_rows, dtype=np.int64)
    dim = getattr(pipeline.evaluator, "embedding_dim", 0)
    hr_emb = pipeline.embed(hr[rows]) if len(rows) else np.empty((0, dim), np.float32)
    if len(rows):
        on_hr_emb([row_keys[r] for r in rows], hr_emb)
    result = ChunkResult(hr_emb, {})
    row_of = {int(i): r for r, i in enumerate(need)}
    at_of = {lv.name: np.array([row_of[int(i)] for i in sr_indices[lv.name]], dtype=np.int64)
             for lv in levels if len(sr_indices.get(lv.name, ())) > 0}
    if not at_of:
        return result
    sr_rows = np.unique(np.concatenate(list(at_of.values())))
    looked_up = np.asarray(known_hr_emb([row_keys[r] for r in sr_rows]), dtype=np.float32)
    emb_of_rows = np.zeros((len(need),) + looked_up.shape[1:], np.float32)
    emb_of_rows[sr_rows] = looked_up
    for level in levels:
        if level.name not in at_of:
            continue
        at = at_of[level.name]
        idx = np.asarray(sr_indices[level.name], dtype=np.int64)
        out = pipeline.process(level, hr[at], idx, [row_names[r] for r in at], [row_keys[r] for r in at],
                               emb_of_rows[at])
        result.sr[level.name] = (idx, out)
    return result
