"""What every task shares: its options, its dataset, and scoring per degradation level.

The runner hands a task, per level of the protocol (one scale, or every LR size of an
``lr_sizes`` protocol), the embeddings of the faces *as the protocol presents them* at that
level: rows of the faces the task degrades (``degraded``) are embeddings of their SR output,
all other rows (e.g. an HR gallery) are HR embeddings. A task scores one level in
``score_level``; ``score`` names the metrics and arrays of several levels ``<name>@<level>``.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np

from benchmark.faces.faceset import FaceSet
from benchmark.faces.selections import call_selection
from benchmark.errors import ConfigError
from benchmark.contracts.metric_keys import at_level
from benchmark.registry import DATASETS

Scores = Tuple[Dict[str, float], Dict[str, np.ndarray]]


def selected(task: "Task", option: str):
    """Call the dataset reader's selection method named by the task option ``option`` with the
    keyword arguments in ``<option>_args`` (e.g. ``selection: people``, ``selection_args:
    {min_images: 4}`` -> ``LFW.people(min_images=4)``). Only methods the reader marks
    ``@selection`` can be named; arguments are checked against the method's signature
    (``benchmark.faces.selections``)."""
    return call_selection(task.dataset, task.options[option], task.options.get(f"{option}_args", {}),
                          f"protocol {task.protocol.name}", option)


class Task:
    """Base class. Subclasses set ``OPTIONS`` (option -> default) and implement ``faces`` and
    ``score_level``; the protocol's ``options`` may only name keys of ``OPTIONS``."""

    OPTIONS: Dict[str, object] = {}
    notes: Tuple[str, ...] = ()  # what the selection left out and why, one line each (manifest)
    # Where identification scoring runs its score blocks' products (``benchmark.score_blocks``):
    # None is NumPy on the CPU; the runner sets the run's --device when that is not the CPU.
    scoring_device: Optional[str] = None

    def __init__(self, protocol, data_root):
        self.protocol = protocol
        given = dict(protocol.options)
        unknown = sorted(set(given) - set(self.OPTIONS))
        if unknown:
            raise ConfigError(f"protocol {protocol.name}: unknown option(s) {', '.join(unknown)} for task "
                              f"{protocol.task} (known: {', '.join(self.OPTIONS) or 'none'})")
        self.options = {**self.OPTIONS, **given}
        self.dataset = DATASETS.get(protocol.dataset)(data_root)

    def faces(self) -> FaceSet:
        raise NotImplementedError

    def degraded(self) -> Optional[np.ndarray]:
        """Indices of the faces the protocol degrades and super-resolves; None: all of them."""
        return None

    def score_level(self, hr_emb: np.ndarray, emb: np.ndarray) -> Scores:
        """Metrics and arrays of one level; ``emb`` as described in the module docstring."""
        raise NotImplementedError

    def score(self, hr_emb: np.ndarray, level_embs: Dict[str, np.ndarray], name_levels: bool) -> Scores:
        """All levels' metrics and arrays; named ``<name>@<level>`` when ``name_levels`` (the
        protocol has ``lr_sizes``)."""
        metrics, arrays = {}, {}
        for level, emb in level_embs.items():
            m, a = self.score_level(hr_emb, emb)
            metrics.update({at_level(k, level if name_levels else None): v for k, v in m.items()})
            arrays.update({at_level(k, level if name_levels else None): v for k, v in a.items()})
        return metrics, arrays


class SelectionTask(Task):
    """A task over one FaceSet given by the dataset's selection (options ``selection`` and
    ``selection_args``)."""

    OPTIONS = {"selection": "all_faces", "selection_args": {}}

    def __init__(self, protocol, data_root):
        super().__init__(protocol, data_root)
        self._faces = selected(self, "selection")

    def faces(self) -> FaceSet:
        return self._faces
