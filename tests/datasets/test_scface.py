"""SCface: the real annotation list (../shared/data/scface), file-name parsing, the
scface-mugshot and scface-1m-2.6m selections, landmark alignment of a fixture, bad folders.

The fixture is an SCface folder in the distributed layout with the real stems of subjects
001..003, whose pictures are real aligned LFW faces rescaled and shifted per camera and
distance (the SCface images may not be redistributed); its annotation file gives the
landmarks where the fixture put them (the real numbers belong to the real photos)."""
import re
import shutil
from collections import Counter

import cv2
import numpy as np
import pytest

from benchmark.faces.landmark_alignment import align_faces, template_points
from benchmark.faces.images import read_rgb_uint8
from benchmark.datasets.scface import SCface, parse_stem, read_annotations
from benchmark.errors import DataError
from benchmark.registry import DATASETS
from benchmark.faces.templates import SPHEREFACE_112x96

from conftest import DATA, LFW_ALIGNED

REAL_ANNOTATIONS = DATA / "scface" / "scface_annotations.txt"
needs_real = pytest.mark.skipif(not REAL_ANNOTATIONS.is_file(), reason="needs ../shared/data/scface")


def independent_parse(path):
    """{stem: 8 numbers} with nothing but str.split."""
    out = {}
    for line in path.read_bytes().decode().split("\r\n"):
        if line.strip():
            f = line.split("\t")
            out[f[0]] = [float(v) for v in f[1:]]
    return out


# --- the real annotation list -----------------------------------------------------------------

@needs_real
def test_real_annotation_list():
    raw = REAL_ANNOTATIONS.read_bytes()
    assert raw.endswith(b"\r\n\r\n")  # CRLF, and a trailing blank line
    oracle = independent_parse(REAL_ANNOTATIONS)
    mine = read_annotations(REAL_ANNOTATIONS)
    assert set(mine) == set(oracle) and len(mine) == 2990
    for stem, values in oracle.items():
        np.testing.assert_array_equal(mine[stem], np.reshape(values, (4, 2)))
    subjects = Counter(s[:3] for s in oracle)
    assert len(subjects) == 130 and set(subjects.values()) == {23}  # frontal + 7 x 3 + cam8
    kinds = Counter(s[4:] for s in oracle)
    assert kinds["frontal"] == kinds["cam8"] == kinds["cam1_1"] == kinds["cam7_3"] == 130


@needs_real
def test_real_points_are_left_eye_right_eye_nose_mouth_centre():
    pts = np.array(list(independent_parse(REAL_ANNOTATIONS).values())).reshape(-1, 4, 2)
    le, re_, nose, mouth = pts[:, 0], pts[:, 1], pts[:, 2], pts[:, 3]
    eye_gap = re_[:, 0] - le[:, 0]
    assert np.all(eye_gap > 0)                                          # 1 left of 2 in the image
    assert np.all(np.abs(re_[:, 1] - le[:, 1]) < 0.5 * eye_gap)          # at about the same height
    assert np.all(nose[:, 1] > np.maximum(le[:, 1], re_[:, 1]))          # 3 below both eyes
    assert np.all((nose[:, 0] > le[:, 0]) & (nose[:, 0] < re_[:, 0]))    # ... and between them
    assert np.all(mouth[:, 1] > nose[:, 1])                              # 4 below the nose
    assert np.all((mouth[:, 0] > le[:, 0]) & (mouth[:, 0] < re_[:, 0]))  # one point: the centre
    # Distance codes: eyes further apart the closer the camera (1 = 4.20 m ... 3 = 1.00 m).
    stems = list(independent_parse(REAL_ANNOTATIONS))
    gap = {d: np.median([eye_gap[i] for i, s in enumerate(stems) if re.fullmatch(rf"\d{{3}}_cam[1-5]_{d}", s)])
           for d in (1, 2, 3)}
    assert gap[1] < gap[2] < gap[3]


@pytest.mark.parametrize("stem,expected", [
    ("001_cam1_1", ("001", 1, 1)), ("130_cam7_3", ("130", 7, 3)), ("042_cam8", ("042", 8, 0)),
    ("007_frontal", ("007", 0, 0)),
    ("001_cam8_1", None), ("001_cam9_1", None), ("001_cam0_1", None), ("001_cam1_4", None),
    ("001_cam1_0", None), ("01_cam1_1", None), ("001_cam1", None), ("001_Frontal", None), ("001_frontal_2", None),
])
def test_parse_stem(stem, expected):
    assert parse_stem(stem) == expected


# --- fixture ------------------------------------------------------------------------------------

SUBJECTS = ["001", "002", "003"]
PEOPLE = {"001": "Colin_Powell", "002": "George_W_Bush", "003": "Tony_Blair"}
SCALE = {1: 0.3, 2: 0.5, 3: 1.0}  # fixture faces shrink with distance, as real ones do


def stems_of(subject):
    if REAL_ANNOTATIONS.is_file():
        return [s for s in independent_parse(REAL_ANNOTATIONS) if s.startswith(subject + "_")]
    return [f"{subject}_frontal"] + [f"{subject}_cam{c}_{d}" for c in range(1, 8) for d in (1, 2, 3)] + \
        [f"{subject}_cam8"]


def face(subject, k):
    files = sorted((LFW_ALIGNED / PEOPLE[subject]).glob("*.jpg")) if LFW_ALIGNED.is_dir() else []
    if files:
        return cv2.imread(str(files[k % len(files)]))  # BGR, 112x96
    return np.random.default_rng(k).integers(0, 256, (112, 96, 3), dtype=np.uint8)


def place(bgr, scale, ox, oy, size):
    """The face scaled by ``scale`` and moved by (ox, oy) in a grey canvas; its 4 landmarks."""
    m = np.array([[scale, 0, ox], [0, scale, oy]])
    canvas = cv2.warpAffine(bgr, m, size, flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC,
                            borderValue=(128, 128, 128))
    pts = template_points(SPHEREFACE_112x96, 4) @ m[:, :2].T + m[:, 2]
    return canvas, pts


@pytest.fixture
def scface_root(tmp_path):
    root = tmp_path / "scface"
    (root / "surveillance_cameras_all").mkdir(parents=True)
    (root / "mugshot_frontal_cropped_all").mkdir()
    lines, truth = [], {}
    for subject in SUBJECTS:
        for k, stem in enumerate(stems_of(subject)):
            _, camera, distance = parse_stem(stem)
            if camera == 0:
                img, pts = place(face(subject, 0), 4.0, 20, 30, (424, 520))
                path = root / "mugshot_frontal_cropped_all" / f"{stem}.JPG"
            else:
                scale = SCALE[distance] if distance else 1.0
                img, pts = place(face(subject, k), scale, 3 * camera, 2 * camera, (130, 150))
                if camera in (6, 7, 8):  # infrared: grayscale JPEGs
                    img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
                path = root / "surveillance_cameras_all" / f"{stem}.jpg"
            assert cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 98])
            truth[stem] = pts
            lines.append(stem + "".join(f"\t{v:.3f}" for v in pts.reshape(-1)))
    (root / "scface_annotations.txt").write_bytes(("\r\n".join(lines) + "\r\n\r\n").encode())
    return root, truth


def test_fixture_all_faces(scface_root):
    root, truth = scface_root
    sc = SCface(root.parent)  # a data root holding scface/
    assert sc.root == root and DATASETS.get("scface") is SCface
    faces = sc.all_faces()
    assert len(faces) == 69 and faces.identities == SUBJECTS
    assert faces.relpaths[:3] == ["mugshot_frontal_cropped_all/001_frontal.JPG",
                                  "surveillance_cameras_all/001_cam1_1.jpg",
                                  "surveillance_cameras_all/001_cam1_2.jpg"]
    assert faces.relpaths[22] == "surveillance_cameras_all/001_cam8.jpg"
    np.testing.assert_array_equal(faces.labels, np.repeat([0, 1, 2], 23))
    assert faces.landmarks.shape == (69, 4, 2) and faces.aligned_frame is None
    for rel, pts in zip(faces.relpaths, faces.landmarks):
        stem = rel.split("/")[1].rsplit(".", 1)[0]
        np.testing.assert_allclose(pts, truth[stem], atol=5e-4)
    assert faces.extra_files == [root / "scface_annotations.txt"]


def test_mugshot_protocol(scface_root):
    root, truth = scface_root
    split = SCface(root).mugshot_protocol()
    assert split.gallery.relpaths == [f"mugshot_frontal_cropped_all/{s}_frontal.JPG" for s in SUBJECTS]
    expected = [f"surveillance_cameras_all/{s}_cam{c}_{d}.jpg" for d in (1, 2, 3) for c in range(1, 6)
                for s in SUBJECTS]
    assert split.probe.relpaths == expected and len(expected) == 45
    np.testing.assert_array_equal(split.probe_distance, np.repeat([1, 2, 3], 15))
    np.testing.assert_array_equal(split.probe_camera, np.tile(np.repeat([1, 2, 3, 4, 5], 3), 3))
    np.testing.assert_array_equal(split.probe.labels, np.tile([0, 1, 2], 15))
    np.testing.assert_array_equal(split.gallery.labels, [0, 1, 2])
    assert split.gallery.identities is split.probe.identities
    np.testing.assert_array_equal(split.gallery_camera, [0, 0, 0])
    np.testing.assert_allclose(split.probe.landmarks[0], truth["001_cam1_1"], atol=5e-4)
    only = SCface(root).mugshot_protocol(cameras=[2], distances=[3])
    assert only.probe.relpaths == [f"surveillance_cameras_all/{s}_cam2_3.jpg" for s in SUBJECTS]


def test_gallery_probe_by_distance(scface_root):
    root, _ = scface_root
    split = SCface(root).gallery_probe_by_distance()
    assert split.gallery.relpaths == [f"surveillance_cameras_all/{s}_cam{c}_3.jpg" for c in range(1, 6)
                                      for s in SUBJECTS]
    assert split.probe.relpaths == [f"surveillance_cameras_all/{s}_cam{c}_2.jpg" for c in range(1, 6)
                                    for s in SUBJECTS]
    assert set(split.gallery_distance) == {3} and set(split.probe_distance) == {2}
    np.testing.assert_array_equal(split.gallery.labels, split.probe.labels)
    with pytest.raises(DataError, match="both 2"):
        SCface(root).gallery_probe_by_distance(2, 2)
    for bad in ([0], [8], [1, 1], []):
        with pytest.raises(DataError, match="cameras must be distinct values"):
            SCface(root).gallery_probe_by_distance(cameras=bad)


@pytest.mark.skipif(not LFW_ALIGNED.is_dir(), reason="needs ../shared/data/lfw: the tolerances hold for real faces")
def test_annotated_faces_align_to_the_lfw_crop(scface_root):
    root, _ = scface_root
    sc = SCface(root)
    faces = sc.all_faces()
    rows = [faces.relpaths.index(r) for r in ("mugshot_frontal_cropped_all/002_frontal.JPG",
                                              "surveillance_cameras_all/002_cam3_3.jpg")]
    out = align_faces(faces, SPHEREFACE_112x96, rows)
    inner = (slice(8, -8), slice(8, -8))
    k_cam3_3 = stems_of("002").index("002_cam3_3")  # the fixture's picture index for that stem
    for k, source in zip(range(2), (face("002", 0), face("002", k_cam3_3))):
        rgb = source[:, :, ::-1].astype(float)
        err = np.abs(out[k].transpose(1, 2, 0) * 255 - rgb)[inner].mean()
        assert err < 3.0, (faces.relpaths[rows[k]], err)  # measured 0.8; another face: ~50
    # A 4.20 m probe straight to an LR frame: 16x14.
    lr = align_faces(faces, SPHEREFACE_112x96.resized(16, 14), [faces.relpaths.index(
        "surveillance_cameras_all/002_cam1_1.jpg")])
    assert lr.shape == (1, 3, 16, 14)


def test_infrared_grayscale_images_read_as_rgb(scface_root):
    root, _ = scface_root
    img = read_rgb_uint8(root / "surveillance_cameras_all" / "001_cam6_2.jpg")
    assert img.shape == (150, 130, 3)
    assert np.array_equal(img[:, :, 0], img[:, :, 1]) and np.array_equal(img[:, :, 1], img[:, :, 2])


def test_without_annotations(scface_root):
    root, _ = scface_root
    (root / "scface_annotations.txt").unlink()
    sc = SCface(root)
    split = sc.mugshot_protocol()
    assert split.probe.landmarks is None and split.gallery.extra_files == [] and len(split.probe) == 45
    assert SCface.inventory(root).missing == [str(root / "scface_annotations.txt")]


# --- bad input -------------------------------------------------------------------------------------

def test_partly_copied_set_is_named_by_the_annotations(scface_root):
    root, _ = scface_root
    (root / "surveillance_cameras_all" / "002_cam4_2.jpg").unlink()
    with pytest.raises(DataError, match=r"lacks 1 of the 69 images scface_annotations.txt annotates \(002_cam4_2\)"):
        SCface(root)


def test_missing_image_is_named_without_annotations(scface_root):
    root, _ = scface_root
    (root / "scface_annotations.txt").unlink()
    (root / "surveillance_cameras_all" / "003_cam5_1.jpg").unlink()
    (root / "mugshot_frontal_cropped_all" / "001_frontal.JPG").unlink()
    sc = SCface(root)
    with pytest.raises(DataError, match=r"lacks 2 images the selection needs \(001_frontal, 003_cam5_1\)"):
        sc.mugshot_protocol()
    with pytest.raises(DataError, match=r"lacks 1 images the selection needs \(003_cam5_1\)"):
        sc.gallery_probe_by_distance(3, 1)
    assert len(sc.gallery_probe_by_distance(3, 2).probe) == 15  # needs neither


@needs_real
def test_the_real_annotations_beside_three_subjects(scface_root):
    root, _ = scface_root
    shutil.copyfile(REAL_ANNOTATIONS, root / "scface_annotations.txt")
    with pytest.raises(DataError, match=r"lacks 2,921 of the 2,990 images .*\(004_cam1_1, 004_cam1_2, 004_cam1_3 and 2,918 more\)"):
        SCface(root)


def test_annotations_missing_an_image(scface_root):
    root, _ = scface_root
    path = root / "scface_annotations.txt"
    lines = path.read_bytes().decode().split("\r\n")
    path.write_bytes("\r\n".join(ln for ln in lines if not ln.startswith("003_cam8")).encode())
    with pytest.raises(DataError, match=r"does not annotate 1 images .*surveillance_cameras_all/003_cam8.jpg"):
        SCface(root)


@pytest.mark.parametrize("name", ["surveillance_cameras_all/001_cam9_1.jpg", "surveillance_cameras_all/001_cam1_4.jpg",
                                  "surveillance_cameras_all/001_frontal.JPG", "surveillance_cameras_all/notes.txt",
                                  "mugshot_frontal_cropped_all/001_cam1_1.jpg", "mugshot_frontal_cropped_all/1_frontal.JPG",
                                  "surveillance_cameras_all/001_cam1_1.png"])
def test_unexpected_file_names_are_named(scface_root, name):
    root, _ = scface_root
    (root / name).write_bytes(b"x")
    with pytest.raises(DataError, match=re.escape(name)):
        SCface(root)


@pytest.mark.parametrize("line", ["001_cam1_1\t1\t2\t3", "001_cam9_1\t1\t2\t3\t4\t5\t6\t7\t8",
                                  "001_cam1_1\t1\t2\t3\t4\t5\t6\t7\tx", "001_cam1_1\t1\t2\t3\t4\t5\t6\t7\tnan"])
def test_malformed_annotation_line_is_named(scface_root, line):
    root, _ = scface_root
    path = root / "scface_annotations.txt"
    lines = path.read_bytes().decode().split("\r\n")
    lines[1] = line
    path.write_bytes("\r\n".join(lines).encode())
    with pytest.raises(DataError, match=re.escape(f"{path}:2:")):
        SCface(root)


def test_annotated_twice(scface_root):
    root, _ = scface_root
    path = root / "scface_annotations.txt"
    lines = path.read_bytes().decode().split("\r\n")
    lines[2] = lines[1]
    path.write_bytes("\r\n".join(lines).encode())
    with pytest.raises(DataError, match=re.escape(f"{path}:3: {lines[1].split()[0]} is annotated twice (also line 2)")):
        SCface(root)


def test_missing_folders_say_where_to_get_scface(tmp_path, scface_root):
    root, _ = scface_root
    with pytest.raises(DataError, match="does not exist.*scface.org"):
        SCface(tmp_path / "nowhere")
    shutil.rmtree(root / "mugshot_frontal_cropped_all")
    with pytest.raises(DataError, match=re.escape(str(root / "mugshot_frontal_cropped_all")) + " is missing.*never fetched"):
        SCface(root)
    inv = SCface.inventory(root)
    assert inv.missing == [f"{root / 'mugshot_frontal_cropped_all'}/"]
    assert inv.found[0] == f"{root / 'surveillance_cameras_all'}/ (66 files)"


def test_combined_split_is_one_faceset_with_index_arrays(scface_root):
    root, truth = scface_root
    split = SCface(root).mugshot_protocol(cameras=[1, 2], distances=[2])
    faces, gallery, probe = split.combined()
    expected = [f"mugshot_frontal_cropped_all/{s}_frontal.JPG" for s in SUBJECTS] + \
        [f"surveillance_cameras_all/{s}_cam{c}_2.jpg" for c in (1, 2) for s in SUBJECTS]
    assert faces.relpaths == expected
    np.testing.assert_array_equal(gallery, [0, 1, 2])
    np.testing.assert_array_equal(probe, [3, 4, 5, 6, 7, 8])
    np.testing.assert_array_equal(faces.labels, [0, 1, 2] * 3)
    np.testing.assert_allclose(faces.landmarks[4], truth["002_cam1_2"], atol=5e-4)
    assert faces.identities == SUBJECTS and faces.image_root == root
