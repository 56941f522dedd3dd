"""The official BLUFR configuration for LFW (Liao et al. 2014): ``blufr_lfw_config.mat``.

The MATLAB v5 file holds ``imageList`` (N x 1 cell of file names such as
``Aaron_Eckhart_0001.jpg``), ``labels`` (N x 1, identities 1..5,749) and 10 x 1 cell arrays
``testIndex``, ``galIndex`` and ``probIndex`` (one index vector per trial, 1-based rows of
``imageList``; ``testIndex{t}`` is the union of ``galIndex{t}`` and ``probIndex{t}``). It also
holds ``trainIndex``, ``devTrainIndex`` and ``devTestIndex``, which fhbench does not use: its
face-recognition evaluators are pre-trained. Indices are converted to 0-based here.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List

import numpy as np
import scipy.io
from scipy.io.matlab import MatReadError

from benchmark.errors import DataError, DataMissing
from benchmark.faces.roots import path_component

BLUFR_URL = "http://www.cbsr.ia.ac.cn/users/scliao/projects/blufr/"
N_TRIALS = 10
TRIAL_VARIABLES = (("testIndex", "test_index"), ("galIndex", "gallery_index"),
                   ("probIndex", "probe_index"))


@dataclass(frozen=True)
class BlufrConfig:
    """The BLUFR trials: ``test_index[t]``, ``gallery_index[t]``, ``probe_index[t]`` are 0-based
    int64 rows of ``image_list`` / ``labels`` for trial t (10 trials)."""

    image_list: List[str]
    labels: np.ndarray
    test_index: List[np.ndarray]
    gallery_index: List[np.ndarray]
    probe_index: List[np.ndarray]
    source: Path

    def relative_paths(self) -> List[str]:
        """``<Name>/<Name>_<NNNN>.jpg`` per image: where LFW's image folders keep it."""
        return [f"{name.rsplit('_', 1)[0]}/{name}" for name in self.image_list]


def _variable(contents: dict, name: str, path: Path) -> np.ndarray:
    if name not in contents:
        raise DataError(f"{path}: variable {name} is missing; is this the BLUFR LFW config "
                        f"(blufr_lfw_config.mat from {BLUFR_URL})?")
    return contents[name]


def _column(value: np.ndarray, name: str, path: Path) -> np.ndarray:
    """A MATLAB N x 1 (or 1 x N) array as a 1-D array."""
    if value.ndim != 2 or min(value.shape) != 1:
        raise DataError(f"{path}: {name} has shape {value.shape}; expected a column (N x 1)")
    return value.reshape(-1)


def _image_list(value: np.ndarray, path: Path) -> List[str]:
    cells = _column(value, "imageList", path)
    names = []
    for i, cell in enumerate(cells):
        text = cell.reshape(-1) if isinstance(cell, np.ndarray) else np.array([cell])
        if text.size != 1 or not isinstance(text[0], str) or not text[0]:
            raise DataError(f"{path}: imageList{{{i + 1}}} is not a non-empty file name")
        # a bare file name: its folder is derived from it, so '/' or '..' could lead anywhere
        names.append(path_component(str(text[0]), f"{path}: imageList{{{i + 1}}}"))
    return names


def _index_vector(cell, name: str, trial: int, n_images: int, path: Path) -> np.ndarray:
    where = f"{path}: {name}{{{trial + 1}}}"
    values = np.asarray(cell)
    if values.dtype == object or values.ndim > 2 or (values.ndim == 2 and min(values.shape) != 1) \
            or values.size == 0:
        raise DataError(f"{where} has shape {values.shape} dtype {values.dtype}; expected a "
                        "non-empty numeric column of 1-based image indices")
    values = values.reshape(-1)
    if not np.issubdtype(values.dtype, np.number):
        raise DataError(f"{where} has dtype {values.dtype}; expected numbers")
    as_int = values.astype(np.int64)
    if not np.array_equal(as_int, values):
        raise DataError(f"{where} holds a non-integer index {values[as_int != values][0]}")
    outside = as_int[(as_int < 1) | (as_int > n_images)]
    if outside.size:
        raise DataError(f"{where} holds index {outside[0]}, outside 1..{n_images} "
                        "(1-based rows of imageList)")
    if np.unique(as_int).size != as_int.size:
        raise DataError(f"{where} names some images more than once")
    return as_int - 1


def load_blufr_config(path) -> BlufrConfig:
    """Read and validate ``blufr_lfw_config.mat``; every problem is a DataError naming the
    variable and the (1-based) trial."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataMissing(f"BLUFR config {path} is missing: put blufr_lfw_config.mat there (it is in "
                          f"the BLUFR toolkit, config/lfw/, from {BLUFR_URL})")
    try:
        contents = scipy.io.loadmat(str(path))
    except NotImplementedError:
        raise DataError(f"{path} is a MATLAB v7.3 (HDF5) file; save it again with -v7 or use the "
                        f"original from {BLUFR_URL}") from None
    except (MatReadError, ValueError, TypeError, OSError) as err:
        raise DataError(f"{path} is not a readable MATLAB file: {err}") from None
    image_list = _image_list(_variable(contents, "imageList", path), path)
    labels = _column(_variable(contents, "labels", path), "labels", path)
    if not np.issubdtype(labels.dtype, np.number) or len(labels) != len(image_list):
        raise DataError(f"{path}: labels has {len(labels)} entries of dtype {labels.dtype}; expected "
                        f"{len(image_list)} numbers, one per imageList entry")
    trials = {}
    for variable, field in TRIAL_VARIABLES:
        cells = _variable(contents, variable, path)
        if cells.dtype != object or cells.size != N_TRIALS or min(cells.shape) != 1:
            raise DataError(f"{path}: {variable} has shape {cells.shape} dtype {cells.dtype}; "
                            f"expected a {N_TRIALS} x 1 cell array (one index vector per trial)")
        trials[field] = [_index_vector(cell, variable, t, len(image_list), path)
                         for t, cell in enumerate(cells.reshape(-1))]
    for t in range(N_TRIALS):
        test = trials["test_index"][t]
        for variable, field in TRIAL_VARIABLES[1:]:
            stray = np.setdiff1d(trials[field][t], test)
            if stray.size:
                raise DataError(f"{path}: {variable}{{{t + 1}}} holds image {stray[0] + 1} that "
                                f"testIndex{{{t + 1}}} does not ({stray.size} such images)")
    return BlufrConfig(image_list, labels.astype(np.int64), trials["test_index"],
                       trials["gallery_index"], trials["probe_index"], path)
