"""The BLUFR config reader: the real blufr_lfw_config.mat, and small .mat files written here
(scipy.io.savemat, the same MATLAB v5 layout: cells of char arrays and of index columns)."""
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from benchmark.faces.blufr import BLUFR_URL, load_blufr_config
from benchmark.errors import DataError

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
BLUFR_MAT = DATA / "lfw" / "blufr_lfw_config.mat"
LFW_ALIGNED = DATA / "lfw" / "aligned-112x96"
needs_blufr = pytest.mark.skipif(not BLUFR_MAT.is_file(),
                                 reason="needs ../shared/data/lfw/blufr_lfw_config.mat")


def cell(vectors):
    array = np.empty((len(vectors), 1), dtype=object)
    for i, vector in enumerate(vectors):
        array[i, 0] = np.asarray(vector, dtype=np.float64).reshape(-1, 1)
    return array


def valid_contents():
    """12 images of 4 people; trial t: test = all but image t+1, gallery = its first 3 (1-based)."""
    names = [f"{person}_{k:04d}.jpg" for person in ("Ann_Lee", "Bo", "Cy_De_Vo", "Di")
             for k in (1, 2, 3)]
    image_list = np.empty((12, 1), dtype=object)
    image_list[:, 0] = names
    tests, galleries, probes = [], [], []
    for t in range(10):
        test = [i for i in range(1, 13) if i != t + 1]
        tests.append(test)
        galleries.append(test[:3])
        probes.append(test[3:])
    labels = np.repeat([1, 2, 3, 4], 3).reshape(-1, 1).astype(np.uint16)
    return {"imageList": image_list, "labels": labels,
            "testIndex": cell(tests), "galIndex": cell(galleries), "probIndex": cell(probes),
            "trainIndex": cell([[1, 2]] * 10)}


def write(tmp_path, contents):
    path = tmp_path / "blufr_lfw_config.mat"
    scipy.io.savemat(path, contents)
    return path


def test_small_config_loads_zero_based(tmp_path):
    config = load_blufr_config(write(tmp_path, valid_contents()))
    assert config.image_list[:4] == ["Ann_Lee_0001.jpg", "Ann_Lee_0002.jpg", "Ann_Lee_0003.jpg",
                                     "Bo_0001.jpg"]
    assert config.labels.tolist() == [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    assert len(config.test_index) == len(config.gallery_index) == len(config.probe_index) == 10
    # Trial 3 (t = 2) leaves out 1-based image 3, i.e. 0-based 2.
    assert config.test_index[2].tolist() == [0, 1, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    assert config.gallery_index[2].tolist() == [0, 1, 3]
    assert config.probe_index[2].tolist() == [4, 5, 6, 7, 8, 9, 10, 11]
    assert config.test_index[2].dtype == np.int64
    assert config.relative_paths()[6] == "Cy_De_Vo/Cy_De_Vo_0001.jpg"


def test_missing_file_says_where_to_put_it_and_where_to_get_it(tmp_path):
    path = tmp_path / "lfw" / "blufr_lfw_config.mat"
    with pytest.raises(DataError) as err:
        load_blufr_config(path)
    assert str(path) in str(err.value) and BLUFR_URL in str(err.value)


@pytest.mark.parametrize("content", [b"this is not a MATLAB file at all" * 10, b"", b"\0" * 128])
def test_corrupt_file_is_a_data_error(tmp_path, content):
    path = tmp_path / "blufr_lfw_config.mat"
    path.write_bytes(content)
    with pytest.raises(DataError, match="not a readable MATLAB file"):
        load_blufr_config(path)


@pytest.mark.parametrize("variable", ["imageList", "labels", "testIndex", "galIndex", "probIndex"])
def test_missing_variable_is_named(tmp_path, variable):
    contents = valid_contents()
    del contents[variable]
    with pytest.raises(DataError, match=f"variable {variable} is missing"):
        load_blufr_config(write(tmp_path, contents))


def test_wrong_number_of_trials_is_named(tmp_path):
    contents = valid_contents()
    contents["galIndex"] = contents["galIndex"][:9]
    with pytest.raises(DataError, match=r"galIndex has shape \(9, 1\).*10 x 1 cell"):
        load_blufr_config(write(tmp_path, contents))


def test_index_vector_that_is_a_matrix_is_named(tmp_path):
    contents = valid_contents()
    contents["testIndex"][4, 0] = np.ones((2, 3))
    with pytest.raises(DataError, match=r"testIndex\{5\} has shape \(2, 3\)"):
        load_blufr_config(write(tmp_path, contents))


def test_labels_of_the_wrong_length_are_refused(tmp_path):
    contents = valid_contents()
    contents["labels"] = contents["labels"][:11]
    with pytest.raises(DataError, match="labels has 11 entries.*expected 12"):
        load_blufr_config(write(tmp_path, contents))


@pytest.mark.parametrize("bad_value", [0, 13])
def test_index_out_of_range_names_variable_and_trial(tmp_path, bad_value):
    contents = valid_contents()
    contents["probIndex"][3, 0] = np.array([[5.0], [bad_value]])
    with pytest.raises(DataError, match=rf"probIndex\{{4\}} holds index {bad_value}, outside 1\.\.12"):
        load_blufr_config(write(tmp_path, contents))


def test_non_integer_index_is_refused(tmp_path):
    contents = valid_contents()
    contents["galIndex"][0, 0] = np.array([[2.0], [3.5]])
    with pytest.raises(DataError, match=r"galIndex\{1\} holds a non-integer index 3.5"):
        load_blufr_config(write(tmp_path, contents))


def test_gallery_outside_the_test_set_names_variable_and_trial(tmp_path):
    contents = valid_contents()
    contents["galIndex"][1, 0] = np.array([[1.0], [2.0]])  # trial 2's test set leaves out image 2
    with pytest.raises(DataError, match=r"galIndex\{2\} holds image 2 that testIndex\{2\} does not"):
        load_blufr_config(write(tmp_path, contents))


def test_duplicate_index_is_refused(tmp_path):
    contents = valid_contents()
    contents["testIndex"][6, 0] = np.array([[1.0], [2.0], [2.0]])
    with pytest.raises(DataError, match=r"testIndex\{7\} names some images more than once"):
        load_blufr_config(write(tmp_path, contents))


@needs_blufr
def test_real_config_loads():
    config = load_blufr_config(BLUFR_MAT)
    assert len(config.image_list) == 13233 and config.labels.shape == (13233,)
    assert config.image_list[0] == "Aaron_Eckhart_0001.jpg"
    assert config.labels.min() == 1 and config.labels.max() == 5749
    assert np.unique(config.labels).size == 5749
    assert len(config.test_index) == len(config.gallery_index) == len(config.probe_index) == 10
    assert [len(t) for t in config.test_index[:3]] == [10281, 9805, 9388]
    raw = scipy.io.loadmat(BLUFR_MAT)
    for t in range(10):
        test, gallery, probe = config.test_index[t], config.gallery_index[t], config.probe_index[t]
        assert np.array_equal(test, raw["testIndex"][t, 0].reshape(-1).astype(np.int64) - 1)
        assert len(gallery) == 1000
        assert np.array_equal(np.union1d(gallery, probe), np.sort(test))  # testIndex = gal U prob
        assert np.intersect1d(gallery, probe).size == 0
        assert test.min() >= 0 and test.max() <= 13232


@needs_blufr
@pytest.mark.skipif(not LFW_ALIGNED.is_dir(), reason="needs ../shared/data/lfw/aligned-112x96")
def test_real_config_names_every_aligned_lfw_image():
    paths = load_blufr_config(BLUFR_MAT).relative_paths()
    assert len(set(paths)) == 13233
    missing = [p for p in paths if not (LFW_ALIGNED / p).is_file()]
    assert missing == []
