"""Training data: pre-aligned HR faces, their degraded LR versions and identity labels.

Where the faces come from (``open_training_faces(data_root)``), all pre-aligned to one
template frame (SphereFace 112x96 unless the config says otherwise), at any resolution:
  data_root/aligned-112x96/<identity>/<image>   an LFW-style root (SphereFace frame);
  data_root/<identity>/<image>                  labelled by folder;
  data_root/<image>                             a flat folder: NO identity labels.

HR size rule: ``benchmark.faces.frames`` (pad to the HR aspect ratio, then resize; the same rule
the protocols' ``hr_size`` uses).

Each item is (lr, hr, label): the HR face, flipped left-right when the sampler says so,
and LR = degradation(HR). Batches and flips (``StageBatches``) are a pure function of
(seed, stage, epoch), so a resumed run sees exactly the batches an uninterrupted one does.
``split_validation`` holds a fraction of each identity's faces out of training (a pure
function of the seed), for the trainer's early stopping.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import numpy as np
import torch

from benchmark.faces.faceset import FaceSet
from benchmark.datasets.identity_folder import IMAGE_SUFFIXES, IdentityFolder
from benchmark.faces.images import read_batch
from benchmark.errors import DataError
from benchmark.faces.frames import fit_to_hr_size, hr_frame
from benchmark.faces.templates import SPHEREFACE_112x96, TEMPLATES

NO_LABEL = -1  # the label of every face in a set without identity labels


def open_training_faces(data_root, frame: str = "sphereface-112x96") -> FaceSet:
    """The faces under ``data_root`` (layouts in the module docstring); ``labels`` is None
    for a flat folder."""
    root = Path(data_root).expanduser()
    if not root.is_dir():
        raise DataError(f"training data root {root} does not exist")
    if (root / "aligned-112x96").is_dir():
        return IdentityFolder(root / "aligned-112x96", aligned=SPHEREFACE_112x96.name).faces()
    if any(p.is_dir() and not p.name.startswith(".") for p in root.iterdir()):
        return IdentityFolder(root, aligned=frame).faces()
    relpaths = sorted(p.name for p in root.iterdir()
                      if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if not relpaths:
        raise DataError(f"training data root {root} holds no images (<identity>/<image> or <image>)")
    return FaceSet(root.name, root, relpaths, None, [], TEMPLATES[frame])


class FaceTrainingSet(torch.utils.data.Dataset):
    """Items are addressed by ``(index, flip)`` (what ``StageBatches`` yields)."""

    def __init__(self, faces: FaceSet, hr_size: Tuple[int, int], degradation):
        if faces.aligned_frame is None:
            raise DataError(f"{faces.image_root}: training needs pre-aligned faces (state their frame)")
        self.faces, self.hr_size, self.degradation = faces, tuple(hr_size), degradation
        self.frame = hr_frame(faces.aligned_frame, self.hr_size)
        self.paths = faces.paths()

    @property
    def has_labels(self) -> bool:
        return self.faces.labels is not None

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, item):
        index, flip = item
        hr = fit_to_hr_size(read_batch([self.paths[index]]), self.hr_size)
        if flip:
            hr = np.ascontiguousarray(hr[..., ::-1])
        lr = np.asarray(self.degradation(hr), dtype=np.float32)
        label = int(self.faces.labels[index]) if self.has_labels else NO_LABEL
        return {"lr": torch.from_numpy(lr[0]), "hr": torch.from_numpy(hr[0]), "label": label, "index": index}


VALIDATION_STREAM = 0x7A11D  # keeps the hold-out draw apart from the batch streams


def split_validation(faces: FaceSet, fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """(training indices, held-out indices) of ``faces``, both sorted: of each identity with
    n faces, round(fraction x n) are held out (at most n - 1, so every identity keeps a
    training face); without labels, round(fraction x n) of all n faces. A pure function of
    (labels, fraction, seed): ``default_rng([seed, VALIDATION_STREAM])`` permutes each
    identity's faces, identities in label order."""
    n = len(faces.relpaths)
    rng = np.random.default_rng([seed, VALIDATION_STREAM])
    groups = ([np.arange(n)] if faces.labels is None else
              [np.flatnonzero(np.asarray(faces.labels) == label) for label in np.unique(faces.labels)])
    held = []
    for members in groups:
        k = min(int(round(fraction * len(members))), len(members) - 1)
        order = rng.permutation(len(members))
        held.extend(members[order[:k]].tolist())
    held = np.array(sorted(held), dtype=np.int64)
    train = np.setdiff1d(np.arange(n), held).astype(np.int64)
    return train, held


class StageBatches(torch.utils.data.Sampler):
    """Batch sampler for steps [start, stop) of one stage: each epoch is a permutation of
    the set (the last partial batch dropped) with a coin flip per face, drawn from
    ``numpy.random.default_rng([seed, stage_index, epoch])``. With ``indices`` (the faces not
    held out for validation) the permutation runs over those positions and yields their
    indices."""

    def __init__(self, n_items: int, batch_size: int, seed: int, stage_index: int,
                 start: int, stop: int, flip: bool = True, indices: Optional[np.ndarray] = None):
        if indices is not None and len(indices) != n_items:
            raise ValueError(f"StageBatches: {len(indices)} indices for {n_items} items")
        if n_items < batch_size:
            raise DataError(f"{n_items} training faces are fewer than one batch of {batch_size}")
        self.n, self.batch_size, self.seed, self.stage_index = n_items, batch_size, seed, stage_index
        self.start, self.stop, self.flip = start, stop, flip
        self.indices = indices
        self.steps_per_epoch = n_items // batch_size
        self._epoch_cache: Optional[Tuple[int, np.ndarray, np.ndarray]] = None

    def __len__(self):
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[List[Tuple[int, bool]]]:
        for step in range(self.start, self.stop):
            yield self.batch(step)

    def batch(self, step: int) -> List[Tuple[int, bool]]:
        epoch, position = divmod(step, self.steps_per_epoch)
        order, flips = self._epoch(epoch)
        chosen = order[position * self.batch_size:(position + 1) * self.batch_size]
        if self.indices is not None:
            return [(int(self.indices[i]), bool(flips[i])) for i in chosen]
        return [(int(i), bool(flips[i])) for i in chosen]

    def _epoch(self, epoch: int):
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            rng = np.random.default_rng([self.seed, self.stage_index, epoch])
            order = rng.permutation(self.n)
            flips = rng.random(self.n) < 0.5 if self.flip else np.zeros(self.n, bool)
            self._epoch_cache = (epoch, order, flips)
        return self._epoch_cache[1:]
