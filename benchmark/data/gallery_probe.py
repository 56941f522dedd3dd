"""A closed-set identification split: a gallery and a probe FaceSet over one identity list.

Both sets share ``identities`` (the same list object), so ``gallery.labels`` and
``probe.labels`` are directly comparable. ``notes`` says, one line each, what the selection
left out and why (e.g. a subject without a day-14 image), for the run's manifest.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

from .faceset import FaceSet


@dataclass
class GalleryProbe:
    gallery: FaceSet
    probe: FaceSet
    notes: List[str] = field(default_factory=list)
