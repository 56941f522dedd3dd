"""LFW selections beyond pairs.txt: every image (all_faces), the people with >= k images
(lfw-ident) and the BLUFR imageList order (lfw-blufr); bad folders named file by file.

Fixtures are small LFW roots built in tmp_path from the real aligned faces (conftest's
``tiny_lfw``: 8 people x images 1..3) or synthetic JPEGs when ../shared/data is absent."""
import re
import shutil
from collections import Counter

import numpy as np
import pytest
import scipy.io

from benchmark.datasets.lfw import LFW
from benchmark.errors import DataError

from conftest import LFW_ALIGNED, TINY_IMAGES_PER_PERSON, TINY_PEOPLE


def relpath(name, number):
    return f"{name}/{name}_{number:04d}.jpg"


def people_txt(counts):
    """people.txt as LFW writes it: fold count, then one fold of 'Name<TAB>n' lines."""
    return "1\n" + f"{len(counts)}\n" + "".join(f"{n}\t{k}\n" for n, k in counts.items())


def add_images(root, name, numbers):
    folder = root / "aligned-112x96" / name
    folder.mkdir(parents=True, exist_ok=True)
    source = next((root / "aligned-112x96").glob("*/*.jpg"))  # any face will do
    for k in numbers:
        shutil.copyfile(source, folder / f"{name}_{k:04d}.jpg")


# --- all_faces ---------------------------------------------------------------------------

def test_all_faces_of_the_tiny_root(tiny_lfw):
    faces = LFW(tiny_lfw).all_faces()
    expected = [relpath(n, k) for n in sorted(TINY_PEOPLE) for k in range(1, TINY_IMAGES_PER_PERSON + 1)]
    assert faces.relpaths == expected
    assert faces.identities == sorted(TINY_PEOPLE)
    np.testing.assert_array_equal(faces.labels, np.repeat(np.arange(8), 3))
    assert faces.image_root == tiny_lfw / "aligned-112x96" and faces.extra_files == []
    assert all(p.is_file() for p in faces.paths())


def test_all_faces_orders_by_number_not_by_listing(tiny_lfw):
    add_images(tiny_lfw, "Zed_Alpha", [10, 2, 1])
    faces = LFW(tiny_lfw).all_faces()
    assert faces.relpaths[-3:] == [relpath("Zed_Alpha", k) for k in (1, 2, 10)]


def test_people_txt_agreeing_is_recorded(tiny_lfw):
    (tiny_lfw / "people.txt").write_text(people_txt({n: 3 for n in TINY_PEOPLE}))
    faces = LFW(tiny_lfw).all_faces()
    assert len(faces) == 24 and faces.extra_files == [tiny_lfw / "people.txt"]


def test_partly_downloaded_folder_is_named(tiny_lfw):
    (tiny_lfw / "people.txt").write_text(people_txt({n: 3 for n in TINY_PEOPLE}))
    (tiny_lfw / "aligned-112x96" / "Hugo_Chavez" / "Hugo_Chavez_0002.jpg").unlink()
    shutil.rmtree(tiny_lfw / "aligned-112x96" / "Colin_Powell")
    with pytest.raises(DataError) as err:
        LFW(tiny_lfw).all_faces()
    msg = str(err.value)
    assert "lacks 4 of the 24 images" in msg and "Colin_Powell_0001.jpg" in msg
    assert "people.txt" in msg and "\n" not in msg


def test_people_txt_disagreeing_with_the_files_is_named(tiny_lfw):
    (tiny_lfw / "people.txt").write_text(people_txt({n: 3 for n in TINY_PEOPLE}))
    add_images(tiny_lfw, "Ariel_Sharon", [4])
    with pytest.raises(DataError, match=r"1 images .*people.txt does not list \(Ariel_Sharon/Ariel_Sharon_0004.jpg\)"):
        LFW(tiny_lfw).all_faces()


@pytest.mark.parametrize("stray", ["Ariel_Sharon/notes.txt", "Ariel_Sharon/Ariel_Sharon_1.jpg",
                                   "Ariel_Sharon/Colin_Powell_0001.jpg", "loose.jpg"])
def test_unexpected_file_names_are_named(tiny_lfw, stray):
    (tiny_lfw / "aligned-112x96" / stray).write_bytes(b"x")
    with pytest.raises(DataError, match=re.escape(stray)):
        LFW(tiny_lfw).all_faces()


def test_hidden_files_are_ignored(tiny_lfw):
    (tiny_lfw / "aligned-112x96" / ".DS_Store").write_bytes(b"x")
    (tiny_lfw / "aligned-112x96" / "Ariel_Sharon" / "._Ariel_Sharon_0001.jpg").write_bytes(b"x")
    assert len(LFW(tiny_lfw).all_faces()) == 24


@pytest.mark.parametrize("line", ["Ariel_Sharon\tthree", "Ariel_Sharon\t3\textra", "Ariel_Sharon\t0"])
def test_malformed_people_txt_names_the_line(tiny_lfw, line):
    text = people_txt({n: 3 for n in TINY_PEOPLE}).replace("Ariel_Sharon\t3", line)
    (tiny_lfw / "people.txt").write_text(text)
    with pytest.raises(DataError, match=re.escape(f"{tiny_lfw / 'people.txt'}:3:")):
        LFW(tiny_lfw).all_faces()


# --- people (lfw-ident) -------------------------------------------------------------------

def test_people_keeps_those_with_enough_images(tiny_lfw):
    add_images(tiny_lfw, "Ariel_Sharon", [4, 5])        # 5 images
    add_images(tiny_lfw, "Colin_Powell", [4])           # 4 images
    add_images(tiny_lfw, "Aaa_Single", [1])             # 1 image
    faces = LFW(tiny_lfw).people(4)
    assert faces.identities == ["Ariel_Sharon", "Colin_Powell"]
    assert faces.relpaths == [relpath("Ariel_Sharon", k) for k in range(1, 6)] + \
        [relpath("Colin_Powell", k) for k in range(1, 5)]
    np.testing.assert_array_equal(faces.labels, [0] * 5 + [1] * 4)
    assert len(LFW(tiny_lfw).people(3)) == 5 + 4 + 6 * 3
    assert LFW(tiny_lfw).people(1).identities == sorted(TINY_PEOPLE + ["Aaa_Single"])
    with pytest.raises(DataError, match="6 or more"):
        LFW(tiny_lfw).people(6)


def test_real_people_with_four_images(lfw_shared):
    # Oracle: people.txt read here, independently of the reader.
    counts = {}
    for line in (lfw_shared / "people.txt").read_text().splitlines():
        f = line.split("\t")
        if len(f) == 2:
            counts[f[0]] = int(f[1])
    keep = {n: k for n, k in counts.items() if k >= 4}
    faces = LFW(lfw_shared).people(4)
    print(f"LFW people with >= 4 images: {len(keep)}, images: {sum(keep.values())}")
    assert len(faces.identities) == len(keep) == 610
    assert len(faces) == sum(keep.values()) == 6733
    assert Counter(faces.identities[i] for i in faces.labels) == Counter(keep)
    assert set(faces.relpaths) == {relpath(n, i) for n, k in keep.items() for i in range(1, k + 1)}


def test_real_all_faces(lfw_shared):
    faces = LFW(lfw_shared).all_faces()
    assert len(faces) == 13233 and len(faces.identities) == 5749
    assert sum(1 for _ in LFW_ALIGNED.glob("*/*.jpg")) == 13233


# --- blufr ---------------------------------------------------------------------------------

def cell(vectors):
    array = np.empty((len(vectors), 1), dtype=object)
    for i, v in enumerate(vectors):
        array[i, 0] = np.asarray(v, dtype=np.float64).reshape(-1, 1)
    return array


def write_blufr(root, names, labels):
    """A BLUFR config over ``names`` (file names): trial t tests every image, gallery = first 2."""
    image_list = np.empty((len(names), 1), dtype=object)
    image_list[:, 0] = names
    every = list(range(1, len(names) + 1))
    scipy.io.savemat(root / "blufr_lfw_config.mat", {
        "imageList": image_list, "labels": np.array(labels, np.float64).reshape(-1, 1),
        "testIndex": cell([every] * 10), "galIndex": cell([every[:2]] * 10),
        "probIndex": cell([every[2:]] * 10)})


def test_blufr_faces_follow_the_image_list(tiny_lfw):
    # Deliberately not sorted: the FaceSet must keep the config's order.
    names = ["Hugo_Chavez_0002.jpg", "Ariel_Sharon_0001.jpg", "Hugo_Chavez_0001.jpg", "Colin_Powell_0003.jpg"]
    write_blufr(tiny_lfw, names, [7, 1, 7, 3])
    faces, config = LFW(tiny_lfw).blufr()
    assert faces.relpaths == ["Hugo_Chavez/Hugo_Chavez_0002.jpg", "Ariel_Sharon/Ariel_Sharon_0001.jpg",
                              "Hugo_Chavez/Hugo_Chavez_0001.jpg", "Colin_Powell/Colin_Powell_0003.jpg"]
    assert faces.identities == ["Ariel_Sharon", "Colin_Powell", "Hugo_Chavez"]
    np.testing.assert_array_equal(faces.labels, [2, 0, 2, 1])
    assert config.gallery_index[0].tolist() == [0, 1]
    assert faces.extra_files == [tiny_lfw / "blufr_lfw_config.mat"]


def test_blufr_image_missing_from_the_folder_is_named(tiny_lfw):
    write_blufr(tiny_lfw, ["Ariel_Sharon_0001.jpg", "Ariel_Sharon_0007.jpg", "Bo_Ba_0001.jpg"], [1, 1, 2])
    with pytest.raises(DataError) as err:
        LFW(tiny_lfw).blufr()
    msg = str(err.value)
    assert "imageList{2} Ariel_Sharon_0007.jpg" in msg and "2 of 3 images missing" in msg
    assert "Bo_Ba/Bo_Ba_0001.jpg" in msg


def test_blufr_labels_that_disagree_with_the_names(tiny_lfw):
    write_blufr(tiny_lfw, ["Ariel_Sharon_0001.jpg", "Colin_Powell_0001.jpg", "Colin_Powell_0002.jpg"], [1, 1, 2])
    with pytest.raises(DataError, match=r"labels\{2\} = 1 is Ariel_Sharon elsewhere"):
        LFW(tiny_lfw).blufr()


def test_blufr_config_missing(tiny_lfw):
    with pytest.raises(DataError, match=re.escape(str(tiny_lfw / "blufr_lfw_config.mat"))):
        LFW(tiny_lfw).blufr()


def test_real_blufr(lfw_shared):
    if not (lfw_shared / "blufr_lfw_config.mat").is_file():
        pytest.skip("needs ../shared/data/lfw/blufr_lfw_config.mat")
    raw = scipy.io.loadmat(str(lfw_shared / "blufr_lfw_config.mat"))
    image_list = [str(c[0][0]) for c in raw["imageList"]]
    faces, config = LFW(lfw_shared).blufr()
    assert len(faces) == 13233
    assert [r.split("/")[1] for r in faces.relpaths] == image_list
    # Same person in the FaceSet exactly when the config's labels agree.
    labels = raw["labels"].reshape(-1)
    first = {}
    for mine, theirs in zip(faces.labels, labels):
        assert first.setdefault(int(theirs), int(mine)) == int(mine)
    assert len(set(faces.labels.tolist())) == len(set(labels.tolist())) == 5749
