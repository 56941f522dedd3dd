"""Shared fixtures: where the real data lives, and a miniature LFW root built per test.

Tests that need the real data in ../shared/data take the ``shared_data`` / ``lfw_shared``
fixtures, which skip cleanly when it is absent.
"""
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

# The area folders (tests/engine, tests/metrics, ...) are not packages: a test that reuses
# another area's helpers (the end-to-end protocol tests take scface's fixture builders) finds
# them whatever order pytest collects the folders in.
for _area in sorted(p for p in Path(__file__).resolve().parent.iterdir() if p.is_dir() and (p / "__init__.py").exists() is False
                    and any(p.glob("test_*.py"))):
    if str(_area) not in sys.path:
        sys.path.append(str(_area))

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
LFW_SHARED = DATA / "lfw"
LFW_ALIGNED = LFW_SHARED / "aligned-112x96"

# The miniature LFW: 8 real LFW people (each has >= 3 images in LFW), images 1..3 each;
# pairs.txt "10 2": per fold 2 matched "Name i j" then 2 mismatched "Name1 i Name2 j".
TINY_PEOPLE = ["Ariel_Sharon", "Arnold_Schwarzenegger", "Colin_Powell", "Donald_Rumsfeld",
               "George_W_Bush", "Gerhard_Schroeder", "Hugo_Chavez", "Jacques_Chirac"]
TINY_IMAGES_PER_PERSON = 3
TINY_FOLDS, TINY_PER_FOLD = 10, 2


def _tiny_pairs():
    """(fold, name_a, number_a, name_b, number_b, is_same) in file order."""
    rows = []
    n = len(TINY_PEOPLE)
    for fold in range(TINY_FOLDS):
        for j in range(TINY_PER_FOLD):
            a = TINY_PEOPLE[(fold + j) % n]
            rows.append((fold, a, 1, a, 2 + j, True))
        for j in range(TINY_PER_FOLD):
            a, b = TINY_PEOPLE[(fold + j) % n], TINY_PEOPLE[(fold + j + 3) % n]
            rows.append((fold, a, 1 + j, b, 3, False))
    return rows


TINY_PAIRS = _tiny_pairs()


def _tiny_pairs_text(rows=TINY_PAIRS) -> str:
    lines = [f"{TINY_FOLDS}\t{TINY_PER_FOLD}"]
    for _, a, i, b, j, same in rows:
        lines.append(f"{a}\t{i}\t{j}" if same else f"{a}\t{i}\t{b}\t{j}")
    return "\n".join(lines) + "\n"


def _synthetic_face(rng) -> np.ndarray:
    """A smooth random 112x96 BGR uint8 image (upsampled low-frequency noise)."""
    small = rng.random((14, 12, 3))
    return np.clip(cv2.resize(small, (96, 112), interpolation=cv2.INTER_CUBIC) * 255, 0, 255).astype(np.uint8)


@pytest.fixture
def shared_data():
    """../shared/data, or skip."""
    if not DATA.is_dir():
        pytest.skip("needs ../shared/data")
    return DATA


@pytest.fixture
def lfw_shared():
    """../shared/data/lfw with pairs.txt and aligned-112x96, or skip."""
    if not (LFW_SHARED / "pairs.txt").is_file() or not LFW_ALIGNED.is_dir():
        pytest.skip("needs ../shared/data/lfw (pairs.txt and aligned-112x96)")
    return LFW_SHARED


@pytest.fixture
def tiny_lfw_pairs():
    """What the ``tiny_lfw`` pairs.txt says: (fold, name_a, i, name_b, j, is_same) per pair."""
    return list(TINY_PAIRS)


@pytest.fixture
def tiny_lfw(tmp_path) -> Path:
    """A miniature LFW root: pairs.txt ("10 2", 40 pairs) beside
    aligned-112x96/<Name>/<Name>_<NNNN>.jpg (24 images of 8 people).

    The images are copies of the real aligned LFW faces when ../shared/data is present,
    else smooth synthetic 112x96 JPEGs under the same names.
    """
    root = tmp_path / "lfw"
    rng = np.random.default_rng(0)
    for name in TINY_PEOPLE:
        folder = root / "aligned-112x96" / name
        folder.mkdir(parents=True)
        for k in range(1, TINY_IMAGES_PER_PERSON + 1):
            fname = f"{name}_{k:04d}.jpg"
            real = LFW_ALIGNED / name / fname
            if real.is_file():
                shutil.copyfile(real, folder / fname)
            else:
                assert cv2.imwrite(str(folder / fname), _synthetic_face(rng))
    (root / "pairs.txt").write_text(_tiny_pairs_text())
    return root


@pytest.fixture
def toy_metrics():
    """Register metrics for one test, as a plug-in would: ``toy_metrics(MetricSpec(...), ...)``;
    they are unregistered afterwards."""
    from benchmark.contracts.metric import METRICS, register_metric

    added = []

    def register(*specs):
        for spec in specs:
            register_metric(spec)
            added.append(spec.name)

    yield register
    for name in added:
        METRICS._entries.pop(name, None)


@pytest.fixture
def proto_dir(tmp_path, monkeypatch):
    """An empty extra protocol folder, searched before the shipped one ($FHBENCH_PROTOCOLS)."""
    folder = tmp_path / "protocols"
    folder.mkdir()
    monkeypatch.setenv("FHBENCH_PROTOCOLS", str(folder))
    return folder


def exact_unit_rows(n, seed, dim=16):
    """Rows v / 8 with integer v in [-3, 3] and sum(v^2) = 64: unit norm, scores k / 64, many ties."""
    rng = np.random.default_rng(seed)
    rows = []
    while len(rows) < n:
        v = rng.integers(-3, 4, size=(4096, dim))
        rows.extend(v[(v * v).sum(axis=1) == 64][: n - len(rows)])
    return np.array(rows, dtype=np.float64) / 8.0


def clustered_embeddings(n: int, dim: int, n_ids: int, seed: int, centre_weight: float):
    """(float32 (n, dim) embeddings, labels): Gaussian noise around one random centre per
    identity, so identification rates are neither 0 nor 1."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_ids, n)
    centres = rng.standard_normal((n_ids, dim)).astype(np.float32)
    return rng.standard_normal((n, dim)).astype(np.float32) + centre_weight * centres[labels], labels


def random_blufr_config(labels, n_trials: int, test_size: int, seed: int = 4, gallery_share: float = 0.3):
    """A BlufrConfig over ``labels`` (one image each): per trial a random test set of
    ``test_size`` images, about ``gallery_share`` of them the gallery and the rest probes."""
    from benchmark.faces.blufr import BlufrConfig

    rng = np.random.default_rng(seed)
    tests, galleries, probes = [], [], []
    for _ in range(n_trials):
        test = np.sort(rng.choice(len(labels), test_size, replace=False))
        in_gallery = rng.random(test_size) < gallery_share
        tests.append(test)
        galleries.append(test[in_gallery])
        probes.append(test[~in_gallery])
    return BlufrConfig([f"{i}.jpg" for i in range(len(labels))], labels, tests, galleries, probes, Path("x.mat"))


def pairs_txt_images(root: Path):
    """Every image an LFW root's pairs.txt names, in first-appearance order (parsed here, not
    by the reader): the order of the runner's face set."""
    seen = []
    for line in (root / "pairs.txt").read_text().splitlines()[1:]:
        f = line.split("\t")
        refs = [(f[0], f[1]), (f[0], f[2])] if len(f) == 3 else [(f[0], f[1]), (f[2], f[3])]
        for name, num in refs:
            p = root / "aligned-112x96" / name / f"{name}_{int(num):04d}.jpg"
            if p not in seen:
                seen.append(p)
    return seen


# Real LFW people for training smoke tests: none is in tiny_lfw.
TRAIN_PEOPLE = ["Tony_Blair", "Vladimir_Putin", "Serena_Williams", "John_Ashcroft"]


@pytest.fixture
def train_faces(lfw_shared, tmp_path):
    """<identity>/<image> training faces: images 1 and 2 of each of TRAIN_PEOPLE (real LFW)."""
    root = tmp_path / "train"
    for name in TRAIN_PEOPLE:
        (root / name).mkdir(parents=True)
        for k in (1, 2):
            shutil.copyfile(lfw_shared / "aligned-112x96" / name / f"{name}_{k:04d}.jpg",
                            root / name / f"{name}_{k:04d}.jpg")
    return root


def lines_by_label(fig):
    """{legend label: Line2D}; an error-bar plot's line is its container's first."""
    (ax,) = fig.axes
    lines = {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}
    lines.update({c.get_label(): c.lines[0] for c in ax.containers})
    return lines
