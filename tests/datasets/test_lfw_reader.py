"""Reading LFW pairs, images and identity folders: what they yield, and one clear
DataError (naming the file, and the line for pair lists) for every bad input."""
import re

import cv2
import numpy as np
import pytest

from benchmark.datasets.identity_folder import IdentityFolder
from benchmark.faces.images import read_batch, read_rgb_uint8, write_rgb
from benchmark.datasets.lfw import LFW
from benchmark.errors import DataError
from benchmark.registry import DATASETS
from benchmark.faces.templates import SPHEREFACE_112x96


def relpath(name, number):
    return f"{name}/{name}_{number:04d}.jpg"


# --- pairs ---------------------------------------------------------------------------

def test_tiny_root_pairs(tiny_lfw, tiny_lfw_pairs):
    lfw = LFW(tiny_lfw)
    assert lfw.image_root == tiny_lfw / "aligned-112x96"
    assert lfw.aligned_frame is SPHEREFACE_112x96
    pairs = lfw.pairs()
    faces = pairs.faces
    assert len(pairs.left) == len(pairs.right) == len(pairs.is_same) == len(pairs.fold) == 40
    for k, (fold, a, i, b, j, same) in enumerate(tiny_lfw_pairs):
        assert faces.relpaths[pairs.left[k]] == relpath(a, i)
        assert faces.relpaths[pairs.right[k]] == relpath(b, j)
        assert pairs.is_same[k] == same
        assert pairs.fold[k] == fold
    assert pairs.is_same.dtype == bool
    # Per fold: 2 matched then 2 mismatched.
    np.testing.assert_array_equal(pairs.fold, np.repeat(np.arange(10), 4))
    np.testing.assert_array_equal(pairs.is_same, np.tile([True, True, False, False], 10))
    # Each image once, in order of first appearance; labels index the sorted identities.
    first_seen = list(dict.fromkeys(r for _, a, i, b, j, _ in tiny_lfw_pairs
                                    for r in (relpath(a, i), relpath(b, j))))
    assert faces.relpaths == first_seen
    assert faces.identities == sorted({r.split("/")[0] for r in first_seen})
    for rel, label in zip(faces.relpaths, faces.labels):
        assert faces.identities[label] == rel.split("/")[0]
    assert all(p.is_file() for p in faces.paths())
    assert faces.extra_files == [tiny_lfw / "pairs.txt"] and pairs.source == tiny_lfw / "pairs.txt"


def test_root_may_hold_an_lfw_subfolder(tiny_lfw):
    lfw = LFW(tiny_lfw.parent)  # tmp_path, which holds lfw/
    assert lfw.root == tiny_lfw and len(lfw.pairs().left) == 40


def test_lfw_is_a_registered_dataset():
    assert DATASETS.get("lfw") is LFW and DATASETS.get("folder") is IdentityFolder


def test_real_pairs_file(lfw_shared):
    # The oracle: our own reading of pairs.txt.
    lines = (lfw_shared / "pairs.txt").read_text().splitlines()
    assert lines[0].split() == ["10", "300"]
    body = [ln.split() for ln in lines[1:] if ln.strip()]
    images, same = set(), []
    for f in body:
        if len(f) == 3:
            images |= {relpath(f[0], int(f[1])), relpath(f[0], int(f[2]))}
            same.append(True)
        else:
            images |= {relpath(f[0], int(f[1])), relpath(f[2], int(f[3]))}
            same.append(False)
    assert len(body) == 6000 and sum(same) == 3000 and len(images) == 7701

    pairs = LFW(lfw_shared).pairs()
    assert len(pairs.left) == 6000 and int(pairs.is_same.sum()) == 3000
    np.testing.assert_array_equal(pairs.is_same, same)
    np.testing.assert_array_equal(np.bincount(pairs.fold), [600] * 10)
    np.testing.assert_array_equal(np.bincount(pairs.fold[pairs.is_same]), [300] * 10)
    assert len(pairs.faces) == 7701 and set(pairs.faces.relpaths) == images
    first = body[0]  # "Abel_Pacheco 1 4"
    assert pairs.faces.relpaths[pairs.left[0]] == relpath(first[0], int(first[1]))
    assert pairs.faces.relpaths[pairs.right[0]] == relpath(first[0], int(first[2]))


def rewrite_line(root, lineno, text):
    """Replace 1-based line ``lineno`` of root/pairs.txt (None deletes it)."""
    path = root / "pairs.txt"
    lines = path.read_text().splitlines()
    if text is None:
        del lines[lineno - 1]
    else:
        lines[lineno - 1] = text
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("lineno,text", [
    (1, "10 two"),                                     # bad header
    (1, "10"),                                         # header with one number
    (3, "Ariel_Sharon\t1\tColin_Powell\t2"),           # a mismatched pair in a matched slot
    (5, "Ariel_Sharon\t1\t2"),                         # a matched pair in a mismatched slot
    (4, "Ariel_Sharon\t1\t2\t3\t4"),                   # five fields
    (2, "Ariel_Sharon\tone\t2"),                       # non-integer number
    (8, "Ariel_Sharon\t1\tColin_Powell\t3.0"),         # non-integer number
    (7, "Nobody_Here\t1\t2"),                          # a pair naming an absent image
])
def test_malformed_pairs_name_file_and_line(tiny_lfw, lineno, text):
    path = rewrite_line(tiny_lfw, lineno, text)
    with pytest.raises(DataError) as err:
        LFW(tiny_lfw).pairs()
    assert f"{path}:{lineno}:" in str(err.value)


def test_absent_image_is_named(tiny_lfw):
    (tiny_lfw / "aligned-112x96" / "Colin_Powell" / "Colin_Powell_0002.jpg").unlink()
    with pytest.raises(DataError) as err:
        LFW(tiny_lfw).pairs()
    # First use of Colin_Powell 2: fold 1's second mismatched pair, line 1 + 4 + 4 = 9.
    assert f"{tiny_lfw / 'pairs.txt'}:9:" in str(err.value)
    assert "Colin_Powell_0002.jpg" in str(err.value)


@pytest.mark.parametrize("drop", [2, 41])
def test_too_few_lines(tiny_lfw, drop):
    path = rewrite_line(tiny_lfw, drop, None)
    with pytest.raises(DataError) as err:
        LFW(tiny_lfw).pairs()
    msg = str(err.value)
    # The header (line 1) made the promise the body breaks.
    assert f"{path}:1:" in msg and "40" in msg and "39" in msg


def test_empty_pairs_file(tiny_lfw):
    (tiny_lfw / "pairs.txt").write_text("")
    with pytest.raises(DataError, match=re.escape(str(tiny_lfw / "pairs.txt"))):
        LFW(tiny_lfw).pairs()


def test_missing_pairs_file(tiny_lfw):
    (tiny_lfw / "pairs.txt").unlink()
    with pytest.raises(DataError, match=re.escape(str(tiny_lfw / "pairs.txt"))):
        LFW(tiny_lfw).pairs()


def test_missing_root_and_missing_image_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        LFW(tmp_path / "nowhere")
    (tmp_path / "pairs.txt").write_text("10 300\n")
    with pytest.raises(DataError, match=r"no LFW image folder .*aligned-112x96.*lfw-deepfunneled"):
        LFW(tmp_path)


# --- images ---------------------------------------------------------------------------

def test_read_missing_image(tmp_path):
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "x.jpg")) + ".*does not exist"):
        read_rgb_uint8(tmp_path / "x.jpg")


def test_read_a_folder_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match=re.escape(str(tmp_path))):
        read_rgb_uint8(tmp_path)


def test_read_corrupt_images(tmp_path):
    rng = np.random.default_rng(0)
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(rng.bytes(2000))
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    ok, buf = cv2.imencode(".jpg", (rng.random((64, 64, 3)) * 255).astype(np.uint8))
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(buf.tobytes()[:len(buf) // 2])
    fake_png = tmp_path / "fake.png"
    fake_png.write_bytes(b"\x89PNG\r\n\x1a\n" + rng.bytes(500))
    for p in (junk, empty, truncated, fake_png):
        with pytest.raises(DataError, match=re.escape(str(p)) + ".*corrupt"):
            read_rgb_uint8(p)


def test_rgb_order(tmp_path):
    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[:, :, 2] = 255  # pure red as OpenCV writes it
    cv2.imwrite(str(tmp_path / "red.png"), bgr)
    img = read_rgb_uint8(tmp_path / "red.png")
    assert img.shape == (4, 5, 3) and img.dtype == np.uint8
    assert (img[:, :, 0] == 255).all() and (img[:, :, 1:] == 0).all()


def test_grayscale_becomes_three_identical_channels(tmp_path):
    gray = np.arange(20, dtype=np.uint8).reshape(4, 5) * 12
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    img = read_rgb_uint8(tmp_path / "g.png")
    assert img.shape == (4, 5, 3)
    for c in range(3):
        np.testing.assert_array_equal(img[:, :, c], gray)


def test_rgba_drops_alpha(tmp_path):
    rng = np.random.default_rng(1)
    bgra = (rng.random((6, 7, 4)) * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), bgra)
    img = read_rgb_uint8(tmp_path / "a.png")
    np.testing.assert_array_equal(img, bgra[:, :, 2::-1])


def test_an_image_of_two_channels_is_refused_by_name(tmp_path, monkeypatch):
    # OpenCV's decoders give 1, 3 or 4 channels; anything else is one line naming the file.
    from benchmark.faces import images

    monkeypatch.setattr(images, "decode_unchanged", lambda path: np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(DataError, match=r"image .*odd\.png has 2 channels"):
        read_rgb_uint8(tmp_path / "odd.png")


def test_16_bit_png_keeps_the_high_byte(tmp_path):
    rng = np.random.default_rng(2)
    bgr16 = rng.integers(0, 65536, (5, 6, 3)).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "d.png"), bgr16)
    img = read_rgb_uint8(tmp_path / "d.png")
    assert img.dtype == np.uint8
    np.testing.assert_array_equal(img, (bgr16[:, :, ::-1] // 256).astype(np.uint8))


def test_float_image_is_refused_not_passed_through(tmp_path):
    # The promise is uint8 or DataError; a float32 TIFF must not leak through as float.
    cv2.imwrite(str(tmp_path / "f.tiff"), np.full((4, 4, 3), 0.5, np.float32))
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "f.tiff"))):
        read_rgb_uint8(tmp_path / "f.tiff")


def test_non_ascii_path(tmp_path):
    p = tmp_path / "José_Bové" / "x.png"
    p.parent.mkdir()
    cv2.imwrite(str(tmp_path / "plain.png"), np.full((2, 3, 3), 7, np.uint8))
    p.write_bytes((tmp_path / "plain.png").read_bytes())
    np.testing.assert_array_equal(read_rgb_uint8(p), np.full((2, 3, 3), 7, np.uint8))


def test_read_batch_scales_to_unit_range_in_rgb_chw(tmp_path):
    rng = np.random.default_rng(3)
    rgb = [(rng.random((8, 6, 3)) * 255).astype(np.uint8) for _ in range(3)]
    paths = []
    for k, im in enumerate(rgb):
        paths.append(tmp_path / f"{k}.png")
        cv2.imwrite(str(paths[-1]), im[:, :, ::-1])
    batch = read_batch(paths)
    assert batch.shape == (3, 3, 8, 6) and batch.dtype == np.float32
    for k, im in enumerate(rgb):
        np.testing.assert_allclose(batch[k], im.transpose(2, 0, 1) / 255.0, atol=1e-7)


def test_read_batch_size_mismatch_names_the_file(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 6, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "b.png"), np.zeros((8, 7, 3), np.uint8))
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "b.png")) + ".*8x7.*8x6"):
        read_batch([tmp_path / "a.png", tmp_path / "b.png"])
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "a.png")) + ".*8x6.*112x96"):
        read_batch([tmp_path / "a.png"], expect_hw=(112, 96))


def test_write_rgb_round_trip(tmp_path):
    rng = np.random.default_rng(4)
    x = rng.random((3, 5, 4)).astype(np.float32)
    write_rgb(tmp_path / "w.png", x)
    np.testing.assert_array_equal(read_rgb_uint8(tmp_path / "w.png"),
                                  np.rint(x.transpose(1, 2, 0) * 255).astype(np.uint8))


def test_tiny_lfw_images_read_as_aligned_faces(tiny_lfw):
    faces = LFW(tiny_lfw).pairs().faces
    batch = read_batch(faces.paths()[:4])
    assert batch.shape == (4, 3, 112, 96) and 0.0 <= batch.min() and batch.max() <= 1.0


# --- identity folder ------------------------------------------------------------------

def test_identity_folder(tmp_path):
    img = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes()
    layout = ["bob/2.png", "bob/1.JPG", "alice/a.jpeg", "alice/.hidden.png", "alice/notes.txt",
              ".trash/x.png", "carol/readme.md"]
    for rel in layout:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(img)
    (tmp_path / "loose.png").write_bytes(img)  # not inside an identity folder
    faces = IdentityFolder(tmp_path).faces()
    assert faces.relpaths == ["alice/a.jpeg", "bob/1.JPG", "bob/2.png"]
    assert faces.identities == ["alice", "bob"]
    np.testing.assert_array_equal(faces.labels, [0, 1, 1])
    assert faces.aligned_frame is None and faces.image_root == tmp_path
    aligned = IdentityFolder(tmp_path, aligned="sphereface-112x96").faces()
    assert aligned.aligned_frame is SPHEREFACE_112x96


def test_identity_folder_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        IdentityFolder(tmp_path / "nowhere")
    with pytest.raises(DataError, match="sphereface-112x96"):
        IdentityFolder(tmp_path, aligned="sphereface")
    (tmp_path / "bob").mkdir()
    (tmp_path / "bob" / "notes.txt").write_text("no images")
    with pytest.raises(DataError, match=re.escape(str(tmp_path)) + ".*no <identity>/<image>"):
        IdentityFolder(tmp_path).faces()
