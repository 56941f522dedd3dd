"""What ``fhbench datasets`` reports: per dataset reader, what a data root holds for it, what
is missing, where to get it, and whether the reader accepts it.

A reader may define ``inventory(data_root) -> Inventory`` (a staticmethod) listing the files
and folders it looks for; whether the data is usable is decided by constructing the reader
itself (and, for a reader with no inventory but a ``faces()`` selection, such as the generic
identity folder, by calling that), so the report and a run can never disagree.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from benchmark.errors import FhbenchError


@dataclass
class Inventory:
    found: List[str] = field(default_factory=list)    # paths present, with counts where useful
    missing: List[str] = field(default_factory=list)  # paths looked for and absent
    how_to_get: str = ""
    fetchable: bool = False                            # ``fhbench datasets --fetch NAME`` works


@dataclass
class DatasetStatus:
    name: str
    summary: str
    ready: bool                   # the reader accepts the data root
    problem: Optional[str]        # the reader's error when not ready
    inventory: Optional[Inventory]


def survey_datasets(data_root) -> List[DatasetStatus]:
    from benchmark.registry import DATASETS

    out = []
    for e in DATASETS.entries():
        inventory = None
        if hasattr(e.obj, "inventory"):
            try:
                inventory = e.obj.inventory(data_root)
            except OSError as err:  # an unreadable folder: report it, keep surveying
                inventory = Inventory(missing=[f"{err.filename}: {err.strerror}"])
        try:
            reader = e.obj(data_root)
            if inventory is None and callable(getattr(reader, "faces", None)):
                reader.faces()
            ready, problem = True, None
        except FhbenchError as err:
            ready, problem = False, str(err)
        out.append(DatasetStatus(e.name, e.summary, ready, problem, inventory))
    return out
