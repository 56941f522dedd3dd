"""Where a dataset's files are under ``--data-root``: the folder itself, or its named
subfolder when the data root holds several datasets (``data/lfw``, ``data/celeba``, ...);
and ``inside_root``: every name a list or a protocol option gives is joined to its dataset
folder through it, so that no entry (``../../etc/passwd``) reaches a file outside."""
from __future__ import annotations

import os
import unicodedata
from pathlib import Path
from typing import Callable

from benchmark.errors import DataError, DataMissing


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
        raise DataMissing(f"{label} data root {root} does not exist; {hint}")
    return find_dataset_folder(root, subfolder, holds_dataset)


def inside_root(root, relative, what: str, error=DataError, allow_absolute: bool = False) -> Path:
    """``root / relative``, when that names something strictly inside ``root``; else
    ``error`` naming ``what`` (the list entry or option) and the value, never the content of
    the file it points at.

    Refused: a non-string, the empty name, NUL, ``..`` leading out of ``root``, and absolute
    paths (unless ``allow_absolute``: then an absolute path inside ``root`` is accepted).
    The test is lexical (``os.path.normpath``; symlinks are not followed), so a dataset
    folder, or an image folder inside it, may be a link to another disk."""
    if not isinstance(relative, (str, os.PathLike)):
        raise error(f"{what} must be a file name, got {relative!r}")
    text = os.fspath(relative)
    if not isinstance(text, str):  # a bytes path
        raise error(f"{what} must be a file name, got {relative!r}")
    if not text or "\0" in text:
        raise error(f"{what} {text!r} is not a usable file name (empty, or holds NUL)")
    if os.path.isabs(text):
        if not allow_absolute:
            raise error(f"{what} {text!r} is an absolute path; name a file inside {root}")
        base = os.path.normpath(os.path.abspath(os.fspath(root)))
        target = os.path.normpath(text)
        if os.path.commonpath([base, target]) != base or target == base:
            raise error(f"{what} {text!r} leads outside {root}; name a file inside it")
        return Path(text)
    if not stays_inside(text):
        raise error(f"{what} {text!r} leads outside {root}; name a file inside it")
    return Path(root) / text


def stays_inside(rel) -> bool:
    """Whether ``rel`` is a relative path, without NUL, naming something strictly inside its
    folder (lexically: ``..`` may not climb out). The one rule ``inside_root`` and ``FaceSet``
    apply to every name joined to a dataset folder."""
    if not isinstance(rel, str) or not rel or "\0" in rel or os.path.isabs(rel):
        return False
    norm = os.path.normpath(rel)
    return norm not in (".", "..") and not norm.startswith("../")


def path_component(name: str, what: str, error=DataError) -> str:
    """``name`` when it is one usable path component (an LFW person or image name from a
    list): not empty, no '/' or '\\\\', no NUL or other control character, not '.' or '..'."""
    if (not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name
            or any(unicodedata.category(c) == "Cc" for c in name)):
        raise error(f"{what} {name!r} is not a file or folder name (a path separator, '..' or a "
                    "control character)")
    return name
