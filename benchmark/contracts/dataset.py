"""The dataset reader contract. A reader is one module in this folder registering a
``DatasetReader`` subclass with ``@DATASETS.register(name)``:

- ``Reader(data_root)`` finds its folder under the data root (``faces/roots.py``) and
  raises ``DataMissing`` (absent: a protocol is skipped) or ``DataError`` (present but
  broken: named, never guessed around);
- ``inventory(data_root)`` (optional, a staticmethod) lists what is present and missing
  without reading images, for ``fhbench data``;
- its ``@selection`` methods (``faces/selections.py``) return the ``FaceSet`` or pairs a
  protocol names (``selection: people``); no other method is reachable from a protocol.
"""
from __future__ import annotations

from typing import List, Optional

from benchmark.faces.selections import selection_names
from benchmark.faces.survey import Inventory


class DatasetReader:
    root = None               # the dataset's folder
    image_root = None         # where the relative image paths start
    aligned_frame = None      # the template its images are aligned to (None: raw photos)

    def __init__(self, data_root):
        raise NotImplementedError

    @staticmethod
    def inventory(data_root) -> Optional[Inventory]:
        """What is present and what is missing; None: the reader has no inventory."""
        return None

    @classmethod
    def selections(cls) -> List[str]:
        """The methods a protocol may name."""
        return selection_names(cls)
