"""The AR face database reader: file names, the headerless .raw format, the ar-cmc split and
bad folders. The fixture is an AR folder in the distributed layout (m-001-01.raw, .bmp, a
subfolder) whose pictures are real LFW faces: the AR images may not be redistributed."""
import re
import shutil

import cv2
import numpy as np
import pytest

from benchmark.datasets.ar import AR, parse_name
from benchmark.faces.images import RAW_BYTES, read_ar_raw
from benchmark.faces.images import read_rgb_uint8
from benchmark.errors import DataError
from benchmark.registry import DATASETS

from conftest import DATA

RAW_MINI = DATA / "lfw-raw-mini"


def face_rgb(k):
    """A 250x250 RGB face: a real LFW photo when ../shared/data is there, else noise."""
    people = sorted(RAW_MINI.glob("*/*.jpg")) if RAW_MINI.is_dir() else []
    if people:
        return cv2.imread(str(people[k % len(people)]))[:, :, ::-1]
    return np.random.default_rng(k).integers(0, 256, (250, 250, 3), dtype=np.uint8)


def raw_canvas(k):
    """A 576x768 RGB frame with a face in the middle and a pure red 10x10 corner."""
    canvas = np.full((576, 768, 3), 90, np.uint8)
    canvas[163:413, 259:509] = face_rgb(k)
    canvas[:10, :10] = (255, 0, 0)
    return canvas


# What the fixture holds: (name, how) with how "raw" or "bmp"; m-002 has no session 14,
# w-001 no session 01.
LAYOUT = [("m-001-01", "bmp"), ("m-001-02", "bmp"), ("m-001-14", "raw"),
          ("m-002-01", "bmp"), ("m-002-02", "bmp"),
          ("m-003-01", "bmp"), ("m-003-14", "raw"),
          ("M-004-01", "bmp"), ("M-004-14", "raw"),
          ("w-001-14", "bmp"), ("w-001-02", "bmp"),
          ("w-002-01", "bmp"), ("w-002-14", "bmp"),
          ("w-003-01", "bmp"), ("w-003-14", "bmp")]


@pytest.fixture
def ar_root(tmp_path):
    root = tmp_path / "ar"
    (root / "day2").mkdir(parents=True)
    written = {}
    for k, (stem, how) in enumerate(LAYOUT):
        sub = "day2/" if int(stem[-2:]) >= 14 else ""
        if how == "raw":
            canvas = raw_canvas(k)
            canvas.tofile(root / f"{sub}{stem}.raw")
            written[f"{sub}{stem}.raw"] = canvas
        else:
            face = face_rgb(k)
            assert cv2.imwrite(str(root / f"{sub}{stem}.bmp"), face[:, :, ::-1])
            written[f"{sub}{stem}.bmp"] = face
    (root / "readme.txt").write_text("not an image: ignored")
    return root, written


# --- names and .raw ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name,expected", [
    ("m-001-01.bmp", ("m", 1, 1)), ("w-056-26.raw", ("w", 56, 26)), ("W-012-14.RAW", ("w", 12, 14)),
    ("m-070-13.png", ("m", 70, 13)),
    ("m-001-27.bmp", None), ("m-001-00.bmp", None), ("m-000-01.bmp", None), ("m-01-01.bmp", None),
    ("m-001-1.bmp", None), ("x-001-01.bmp", None), ("m-001-01.txt", None), ("m_001_01.bmp", None),
])
def test_parse_name(name, expected):
    assert parse_name(name) == expected


def test_raw_is_interleaved_rgb_row_by_row(tmp_path):
    canvas = raw_canvas(0)
    canvas.tofile(tmp_path / "m-001-01.raw")
    assert (tmp_path / "m-001-01.raw").stat().st_size == 768 * 576 * 3 == RAW_BYTES
    img = read_ar_raw(tmp_path / "m-001-01.raw")
    assert img.shape == (576, 768, 3) and img.dtype == np.uint8
    np.testing.assert_array_equal(img, canvas)
    assert img[0, 0].tolist() == [255, 0, 0] and img[0, 767].tolist() == [90, 90, 90]
    # The generic image reader hands .raw to the AR reader.
    np.testing.assert_array_equal(read_rgb_uint8(tmp_path / "m-001-01.raw"), canvas)


@pytest.mark.parametrize("size", [0, 1000, RAW_BYTES - 1, RAW_BYTES + 3])
def test_raw_of_the_wrong_size_is_named(tmp_path, size):
    path = tmp_path / "w-002-03.raw"
    path.write_bytes(b"\x01" * size)
    with pytest.raises(DataError, match=re.escape(str(path)) + f" has {size:,} bytes.*1,327,104"):
        read_rgb_uint8(path)


def test_missing_raw(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_ar_raw(tmp_path / "m-001-01.raw")


# --- reader and split ----------------------------------------------------------------------------------

def test_all_faces(ar_root):
    root, written = ar_root
    ar = AR(root.parent)  # a data root that holds ar/
    assert ar.root == root and DATASETS.get("ar") is AR
    faces = ar.all_faces()
    expected = ["m-001-01.bmp", "m-001-02.bmp", "day2/m-001-14.raw", "m-002-01.bmp", "m-002-02.bmp",
                "m-003-01.bmp", "day2/m-003-14.raw", "M-004-01.bmp", "day2/M-004-14.raw",
                "w-001-02.bmp", "day2/w-001-14.bmp", "w-002-01.bmp", "day2/w-002-14.bmp",
                "w-003-01.bmp", "day2/w-003-14.bmp"]
    assert faces.relpaths == expected
    assert faces.identities == ["m-001", "m-002", "m-003", "m-004", "w-001", "w-002", "w-003"]
    np.testing.assert_array_equal(faces.labels, [0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6])
    assert faces.aligned_frame is None
    for rel, path in zip(faces.relpaths, faces.paths()):
        np.testing.assert_array_equal(read_rgb_uint8(path), written[rel])  # .bmp is lossless


def test_cmc_split(ar_root):
    root, _ = ar_root
    split = AR(root).cmc_split(n_men=2, n_women=2)
    # m-002 lacks session 14 and w-001 session 01: passed over, and said so.
    assert split.gallery.relpaths == ["day2/m-001-14.raw", "day2/m-003-14.raw", "day2/w-002-14.bmp",
                                      "day2/w-003-14.bmp"]
    assert split.probe.relpaths == ["m-001-01.bmp", "m-003-01.bmp", "w-002-01.bmp", "w-003-01.bmp"]
    assert split.gallery.identities == split.probe.identities == ["m-001", "m-003", "w-002", "w-003"]
    np.testing.assert_array_equal(split.gallery.labels, [0, 1, 2, 3])
    np.testing.assert_array_equal(split.probe.labels, [0, 1, 2, 3])
    assert split.notes == ["AR m-002 (no session 14) passed over", "AR w-001 (no session 01) passed over"]
    again = AR(root).cmc_split(n_men=2, n_women=2)
    assert again.gallery.relpaths == split.gallery.relpaths and again.probe.relpaths == split.probe.relpaths
    # Three men are eligible (m-001, m-003, m-004); the third is taken when asked for.
    assert AR(root).cmc_split(n_men=3, n_women=1).gallery.identities == ["m-001", "m-003", "m-004", "w-002"]


def test_too_few_people_for_the_split(ar_root):
    root, _ = ar_root
    with pytest.raises(DataError, match=r"only 3 men have both a session 14 and a session 01 image, 50 "
                                        r"needed; passed over: m-002 \(no session 14\)"):
        AR(root).cmc_split()


# --- bad input ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("stray", ["m-001-27.bmp", "photo.jpg", "day2/m-1-14.bmp", "w-001-01 (1).bmp"])
def test_unexpected_file_names_are_named(ar_root, stray):
    root, _ = ar_root
    shutil.copyfile(root / "m-001-01.bmp", root / stray)
    with pytest.raises(DataError, match=re.escape(stray)):
        AR(root)


def test_the_same_image_twice_is_refused(ar_root):
    root, _ = ar_root
    raw_canvas(0).tofile(root / "m-001-01.raw")
    with pytest.raises(DataError, match=r"m-001-01.bmp and m-001-01.raw are both m-001 session 01"):
        AR(root)


def test_empty_or_missing_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist.*Martinez"):
        AR(tmp_path / "nowhere")
    (tmp_path / "ar").mkdir()
    with pytest.raises(DataError, match=re.escape(f"no AR images (m-001-01.raw, w-001-14.bmp, ...) in {tmp_path / 'ar'}")):
        AR(tmp_path)
    assert AR.inventory(tmp_path).found == []


def test_grayscale_bmp_reads_as_three_equal_channels(ar_root):
    root, _ = ar_root
    gray = (np.arange(120 * 165) % 256).astype(np.uint8).reshape(165, 120)
    assert cv2.imwrite(str(root / "w-003-02.bmp"), gray)
    faces = AR(root).all_faces()
    img = read_rgb_uint8(faces.paths()[faces.relpaths.index("w-003-02.bmp")])
    assert img.shape == (165, 120, 3) and all(np.array_equal(img[:, :, c], gray) for c in range(3))


def test_inventory_counts_people(ar_root):
    root, _ = ar_root
    inv = AR.inventory(root.parent)
    assert inv.found == [f"{root}/ (15 images: 4 men, 3 women)"] and inv.missing == []


def test_a_root_of_other_datasets_has_no_ar_images(tiny_lfw):
    # LFW's JPEGs are not "unexpected AR names": there is simply no AR folder here.
    with pytest.raises(DataError, match=re.escape(f"no AR images (m-001-01.raw, w-001-14.bmp, ...) in {tiny_lfw.parent}")):
        AR(tiny_lfw.parent)


def test_combined_split(ar_root):
    root, _ = ar_root
    faces, gallery, probe = AR(root).cmc_split(n_men=2, n_women=2).combined()
    assert [faces.relpaths[i] for i in gallery] == ["day2/m-001-14.raw", "day2/m-003-14.raw",
                                                     "day2/w-002-14.bmp", "day2/w-003-14.bmp"]
    assert [faces.relpaths[i] for i in probe] == ["m-001-01.bmp", "m-003-01.bmp", "w-002-01.bmp", "w-003-01.bmp"]
    np.testing.assert_array_equal(faces.labels[gallery], faces.labels[probe])
    assert len(faces) == 8 and faces.landmarks is None
