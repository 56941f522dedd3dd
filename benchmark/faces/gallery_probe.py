"""A closed-set identification split: a gallery and a probe FaceSet over one identity list.

Both sets share ``identities`` (the same list object), so ``gallery.labels`` and
``probe.labels`` are directly comparable. ``notes`` says, one line each, what the selection
left out and why (e.g. a subject without a day-14 image), for the run's manifest.
``combined()`` gives one FaceSet and two index arrays, for a runner that processes (degrades,
super-resolves, embeds) one set and then scores gallery rows against probe rows.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import List, Tuple

import numpy as np

from benchmark.errors import DataError
from benchmark.faces.faceset import FaceSet


@dataclass
class GalleryProbe:
    gallery: FaceSet
    probe: FaceSet
    notes: List[str] = field(default_factory=list)

    def combined(self) -> Tuple[FaceSet, np.ndarray, np.ndarray]:
        """(faces, gallery_index, probe_index): each image once (gallery first, in order),
        and the rows of ``faces`` that make up the gallery and the probes."""
        g, p = self.gallery, self.probe
        if g.image_root != p.image_root or g.identities != p.identities:
            raise DataError("gallery and probe come from different folders or identity lists; "
                            "they cannot be combined into one FaceSet")
        if (g.landmarks is None) != (p.landmarks is None):
            raise DataError("only one of gallery and probe carries landmarks; they cannot be combined")
        row = {}
        for rel in g.relpaths + p.relpaths:
            row.setdefault(rel, len(row))
        order = np.array([row[r] for r in g.relpaths + p.relpaths], dtype=np.int64)
        first = np.unique(order, return_index=True)[1]  # each row's first occurrence
        labels = np.concatenate([g.labels, p.labels])[first]
        landmarks = None if g.landmarks is None else np.concatenate([g.landmarks, p.landmarks])[first]
        faces = dataclasses.replace(g, relpaths=list(row), labels=labels, landmarks=landmarks,
                                    extra_files=list(dict.fromkeys(g.extra_files + p.extra_files)))
        return faces, order[:len(g)], order[len(g):]
