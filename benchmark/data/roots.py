"""Where a dataset's files are under ``--data-root``: the folder itself, or its named
subfolder when the data root holds several datasets (``data/lfw``, ``data/celeba``, ...)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import DataError


def find_dataset_folder(data_root, subfolder: str, holds_dataset: Callable[[Path], bool]) -> Path:
    """``data_root/subfolder`` when ``data_root`` does not itself hold the dataset (by
    ``holds_dataset``) and that subfolder exists; else ``data_root``. Never raises."""
    root = Path(data_root).expanduser()
    if not holds_dataset(root) and (root / subfolder).is_dir():
        return root / subfolder
    return root


def open_dataset_folder(data_root, subfolder: str, holds_dataset: Callable[[Path], bool], label: str,
                        hint: str) -> Path:
    """``find_dataset_folder``, after checking that ``data_root`` exists (else a DataError
    naming the dataset, the path and where to get the data)."""
    root = Path(data_root).expanduser()
    if not root.is_dir():
        raise DataError(f"{label} data root {root} does not exist; {hint}")
    return find_dataset_folder(root, subfolder, holds_dataset)
