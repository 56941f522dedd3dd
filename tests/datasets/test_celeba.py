"""CelebA: the list files (the real ones in ../shared/data/celeba, checked against pandas and
collections), the celeba-knn and celeba-10fold selections, the seeded draw, and a small CelebA
root in the exact on-disk layout (real CelebA file names, identities and partitions, with
real LFW faces as the pictures: the CelebA images may not be redistributed)."""
import hashlib
import re
import shutil
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from benchmark.datasets.celeba import CelebA, CelebaLists, write_pair_draw, write_pairs_file
from benchmark.faces.images import read_rgb_uint8
from benchmark.faces.seeded import SeededDraw
from benchmark.errors import DataError
from benchmark.registry import DATASETS

from conftest import DATA, LFW_ALIGNED

CELEBA = DATA / "celeba"


def read_pairs_of_columns(path):
    """{file name: int} from a real list, read independently of the reader."""
    out = {}
    for line in Path(path).read_bytes().decode().split("\r\n"):  # CRLF, as shipped
        if line:
            name, value = line.split(" ")
            out[name] = int(value)
    return out


@pytest.fixture(scope="module")
def real_lists():
    if not (CELEBA / "identity_CelebA.txt").is_file():
        pytest.skip("needs ../shared/data/celeba (the real CelebA lists)")
    return CelebaLists.load(CELEBA)


@pytest.fixture(scope="module")
def real_columns():
    if not (CELEBA / "identity_CelebA.txt").is_file():
        pytest.skip("needs ../shared/data/celeba (the real CelebA lists)")
    return (read_pairs_of_columns(CELEBA / "identity_CelebA.txt"),
            read_pairs_of_columns(CELEBA / "list_eval_partition.txt"))


# --- the real lists ---------------------------------------------------------------------------

def test_real_lists_are_read_whole(real_lists):
    assert len(real_lists.names) == 202599 and real_lists.names[0] == "000001.jpg"
    assert real_lists.identity[0] == 2880 and len(set(real_lists.identity.tolist())) == 10177
    assert Counter(real_lists.partition.tolist()) == {0: 162770, 1: 19867, 2: 19962}


def test_real_knn_selection_against_pandas(real_lists):
    pd = pytest.importorskip("pandas")
    ident = pd.read_csv(CELEBA / "identity_CelebA.txt", sep=" ", header=None, names=["file", "id"])
    part = pd.read_csv(CELEBA / "list_eval_partition.txt", sep=" ", header=None, names=["file", "p"])
    test = ident.merge(part, on="file").query("p == 2")
    counts = test["id"].value_counts()
    oracle_ids = set(counts[counts == 30].index)
    rows = real_lists.knn_selection(partition=2, images_per_identity=30)
    print(f"CelebA test-partition identities with exactly 30 images: {len(oracle_ids)} "
          f"({len(rows)} images)")
    assert set(real_lists.identity[rows].tolist()) == oracle_ids
    assert len(oracle_ids) == 259 and len(rows) == 30 * 259
    assert set(real_lists.names[r] for r in rows) == set(test[test["id"].isin(oracle_ids)]["file"])
    assert np.all(np.diff(rows) > 0)


def test_real_knn_selection_against_collections(real_columns, real_lists):
    identity, partition = real_columns
    per_id = Counter(identity[f] for f in identity if partition[f] == 2)
    assert sum(1 for n in per_id.values() if n == 30) == 259
    # No identity is in two partitions, so "exactly 30 in the test partition" is also
    # "exactly 30 in CelebA" for these identities.
    partitions_of = defaultdict(set)
    for f, i in identity.items():
        partitions_of[i].add(partition[f])
    assert all(len(p) == 1 for p in partitions_of.values())
    assert len(real_lists.knn_selection(2, 31)) == 31 * sum(1 for n in per_id.values() if n == 31)


def test_real_pair_draw(real_lists, real_columns):
    identity, partition = real_columns
    a = real_lists.draw_pairs(seed=0, n_genuine=3000, n_impostor=3000, n_folds=10)
    b = real_lists.draw_pairs(seed=0, n_genuine=3000, n_impostor=3000, n_folds=10)
    for x, y in ((a.left, b.left), (a.right, b.right), (a.is_same, b.is_same), (a.fold, b.fold)):
        np.testing.assert_array_equal(x, y)
    names = real_lists.names
    left = [names[i] for i in a.left]
    right = [names[i] for i in a.right]
    assert len(left) == 6000 and int(a.is_same.sum()) == 3000
    # LFW View 2 shape: fold by fold, 300 genuine then 300 impostor.
    np.testing.assert_array_equal(a.fold, np.repeat(np.arange(10), 600))
    np.testing.assert_array_equal(a.is_same, np.tile(np.repeat([True, False], 300), 10))
    for l, r, same in zip(left, right, a.is_same):
        assert partition[l] == partition[r] == 2
        assert (identity[l] == identity[r]) == same
        assert l < r
    assert len({(l, r) for l, r in zip(left, right)}) == 6000  # no pair twice
    # Folds are disjoint in identity, as LFW's are.
    fold_of = {}
    for l, r, f in zip(left, right, a.fold):
        for name in (l, r):
            assert fold_of.setdefault(identity[name], f) == f
    # Pin of the draw (PCG64 words only, so it must not change with NumPy or the machine).
    assert (left[0], right[0]) == ("182651.jpg", "195684.jpg")
    assert (left[300], right[300]) == ("182667.jpg", "184391.jpg")
    c = real_lists.draw_pairs(seed=1)
    assert not np.array_equal(c.left, a.left)


# --- SeededDraw -------------------------------------------------------------------------------

def test_below_is_the_raw_word_modulo_n():
    words = np.random.PCG64(7).random_raw(5)  # the oracle: the bit generator itself
    draw = SeededDraw(7)
    assert [draw.below(1000) for _ in range(5)] == [int(w) % 1000 for w in words]


def test_below_rejects_the_biased_tail(monkeypatch):
    draw = SeededDraw(0)
    stream = iter([2 ** 64 - 1, 5])  # 2**64 mod 3 = 1, so the largest word is rejected
    monkeypatch.setattr(draw, "word", lambda: next(stream))
    assert draw.below(3) == 2


def test_permutation_is_fisher_yates(monkeypatch):
    draw = SeededDraw(0)
    choices = iter([0, 1])  # i = 2 swaps with 0: [2, 1, 0]; i = 1 stays: [2, 1, 0]
    monkeypatch.setattr(draw, "below", lambda n: next(choices))
    assert draw.permutation(3).tolist() == [2, 1, 0]
    p = SeededDraw(3).permutation(50)
    assert sorted(p.tolist()) == list(range(50)) and p.tolist() != list(range(50))


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_bad_seed(seed):
    with pytest.raises(ValueError):
        SeededDraw(seed)


# --- a small CelebA root -----------------------------------------------------------------------

LFW_PEOPLE = ["George_W_Bush", "Colin_Powell", "Tony_Blair", "Donald_Rumsfeld", "Gerhard_Schroeder",
              "Ariel_Sharon", "Hugo_Chavez", "Junichiro_Koizumi", "Jean_Chretien", "John_Ashcroft",
              "Jacques_Chirac", "Serena_Williams", "Vladimir_Putin", "Luiz_Inacio_Lula_da_Silva"]


def pick_identities(identity, partition):
    """Real CelebA identities for the fixture: {role: [ids]} chosen from the real lists."""
    per = defaultdict(Counter)
    for f, i in identity.items():
        per[partition[f]][i] += 1
    test, train = per[2], per[0]

    def first(counter, n, k):
        return sorted(i for i, c in counter.items() if c == n)[:k]

    return {"knn": first(test, 30, 3), "near": first(test, 31, 1) + first(test, 29, 1),
            "small": first(test, 3, 6), "train30": first(train, 30, 2)}


@pytest.fixture
def celeba_root(tmp_path, real_columns):
    """tmp_path/celeba: the real list lines of 13 chosen identities (CRLF) and their images."""
    identity, partition = real_columns
    chosen = pick_identities(identity, partition)
    ids = [i for group in chosen.values() for i in group]
    root = tmp_path / "celeba"
    (root / "img_align_celeba").mkdir(parents=True)
    files = sorted(f for f in identity if identity[f] in set(ids))
    faces_of = {}
    for k, i in enumerate(ids):
        person = LFW_PEOPLE[k % len(LFW_PEOPLE)]
        faces_of[i] = sorted((LFW_ALIGNED / person).glob("*.jpg"))
    used = Counter()
    for f in files:
        i = identity[f]
        shutil.copyfile(faces_of[i][used[i] % len(faces_of[i])], root / "img_align_celeba" / f)
        used[i] += 1
    (root / "identity_CelebA.txt").write_bytes("".join(f"{f} {identity[f]}\r\n" for f in files).encode())
    (root / "list_eval_partition.txt").write_bytes("".join(f"{f} {partition[f]}\r\n" for f in files).encode())
    return root, chosen, {f: identity[f] for f in files}, {f: partition[f] for f in files}


def test_fixture_reader_and_knn(celeba_root):
    root, chosen, identity, partition = celeba_root
    celeba = CelebA(root.parent)  # a data root holding celeba/
    assert celeba.root == root and celeba.image_root == root / "img_align_celeba"
    assert DATASETS.get("celeba") is CelebA
    faces = celeba.knn_faces()
    expected = sorted(f for f in identity if identity[f] in chosen["knn"])
    assert faces.relpaths == expected and len(expected) == 90
    assert faces.identities == [str(i) for i in sorted(chosen["knn"])]
    assert [int(faces.identities[k]) for k in faces.labels] == [identity[f] for f in expected]
    assert faces.aligned_frame is None and faces.dataset == "celeba"
    assert faces.extra_files == [root / "identity_CelebA.txt", root / "list_eval_partition.txt"]
    assert all(p.is_file() for p in faces.paths())
    assert len(celeba.all_faces()) == len(identity)
    # The 30-image training identities are not in the test partition; 29 and 31 are not 30.
    assert not set(chosen["train30"] + chosen["near"]) & {int(i) for i in faces.identities}


def test_fixture_pairs_and_written_list(celeba_root, tmp_path):
    root, chosen, identity, partition = celeba_root
    celeba = CelebA(root)
    pairs = celeba.verification_pairs(seed=0, n_genuine=6, n_impostor=6, n_folds=2)
    again = CelebA(root).verification_pairs(seed=0, n_genuine=6, n_impostor=6, n_folds=2)
    assert pairs.faces.relpaths == again.faces.relpaths
    np.testing.assert_array_equal(pairs.left, again.left)
    np.testing.assert_array_equal(pairs.right, again.right)
    np.testing.assert_array_equal(pairs.is_same, np.tile(np.repeat([True, False], 3), 2))
    rel = pairs.faces.relpaths
    for a, b, same in zip(pairs.left, pairs.right, pairs.is_same):
        assert partition[rel[a]] == partition[rel[b]] == 2
        assert (identity[rel[a]] == identity[rel[b]]) == same
    out = write_pairs_file(pairs, root / "out" / "celeba_pairs.txt")  # pair lists live inside the CelebA folder
    lines = out.read_text().splitlines()
    assert lines[0] == "2\t3" and len(lines) == 13
    first = lines[1].split("\t")  # "<identity> <file> <file>"
    assert len(first) == 3 and identity[first[1]] == identity[first[2]] == int(first[0])
    imp = lines[4].split("\t")    # "<identity> <file> <identity> <file>"
    assert len(imp) == 4 and identity[imp[1]] == int(imp[0]) and identity[imp[3]] == int(imp[2])
    back = celeba.pairs(out)
    assert back.faces.relpaths == rel and back.source == out
    for x, y in ((back.left, pairs.left), (back.right, pairs.right), (back.is_same, pairs.is_same),
                 (back.fold, pairs.fold)):
        np.testing.assert_array_equal(x, y)


def test_pair_list_naming_a_wrong_identity(celeba_root, tmp_path):
    root, *_ = celeba_root
    celeba = CelebA(root)
    out = write_pairs_file(celeba.verification_pairs(0, 6, 6, 2), root / "p.txt")
    lines = out.read_text().splitlines()
    f = lines[2].split("\t")
    lines[2] = "\t".join(["1", f[1], f[2]])
    out.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=re.escape(f"{out}:3: {f[1]} is identity {f[0]}")):
        celeba.pairs(out)


def test_too_few_identities_for_the_folds(celeba_root):
    root, *_ = celeba_root
    with pytest.raises(DataError, match="fewer than 20 folds"):
        CelebA(root).verification_pairs(n_genuine=20, n_impostor=20, n_folds=20)
    with pytest.raises(DataError, match="do not split evenly"):
        CelebA(root).verification_pairs(n_genuine=25, n_impostor=20, n_folds=10)


def test_kaggle_nested_image_folder(celeba_root):
    root, *_ = celeba_root
    images = root / "img_align_celeba"
    tmp = root / "tmp"
    images.rename(tmp)
    images.mkdir()
    tmp.rename(images / "img_align_celeba")
    assert CelebA(root).image_root == images / "img_align_celeba"


# --- bad input ------------------------------------------------------------------------------------

def test_partly_downloaded_set_is_named(celeba_root):
    root, chosen, identity, _ = celeba_root
    gone = sorted(identity)[5]
    (root / "img_align_celeba" / gone).unlink()
    with pytest.raises(DataError) as err:
        CelebA(root)
    msg = str(err.value)
    assert f"lacks 1 of the {len(identity)} images" in msg and gone in msg and "\n" not in msg


def test_files_the_list_does_not_name(celeba_root):
    root, *_ = celeba_root
    (root / "img_align_celeba" / "000001 (copy).jpg").write_bytes(b"x")
    (root / "img_align_celeba" / ".DS_Store").write_bytes(b"x")  # hidden: ignored
    with pytest.raises(DataError, match=re.escape("1 files that identity_CelebA.txt does not list (000001 (copy).jpg)")):
        CelebA(root)


def rewrite(path, lineno, text):
    lines = path.read_bytes().decode().split("\r\n")
    lines[lineno - 1] = text
    path.write_bytes("\r\n".join(lines).encode())


@pytest.mark.parametrize("file,text", [
    ("identity_CelebA.txt", "1.jpg 5"),
    ("identity_CelebA.txt", "000001.png 5"),
    ("identity_CelebA.txt", "{name} abc"),
    ("identity_CelebA.txt", "{name} 0"),
    ("identity_CelebA.txt", "{name}"),
    ("list_eval_partition.txt", "{name} 3"),
    ("list_eval_partition.txt", "{name} 1 2"),
])
def test_malformed_list_lines_name_file_and_line(celeba_root, file, text):
    root, _, identity, _ = celeba_root
    name = sorted(identity)[3]
    rewrite(root / file, 4, text.format(name=name))
    with pytest.raises(DataError, match=re.escape(f"{root / file}:4:")):
        CelebA(root)


def test_duplicate_and_disagreeing_lists(celeba_root):
    root, _, identity, partition = celeba_root
    names = sorted(identity)
    rewrite(root / "identity_CelebA.txt", 3, f"{names[0]} {identity[names[0]]}")
    with pytest.raises(DataError, match=re.escape(f"identity_CelebA.txt:3: {names[0]} is listed twice (also line 1)")):
        CelebA(root)
    rewrite(root / "identity_CelebA.txt", 3, f"{names[2]} {identity[names[2]]}")
    rewrite(root / "list_eval_partition.txt", 3, f"{names[3]} {partition[names[3]]}")
    rewrite(root / "list_eval_partition.txt", 4, f"{names[2]} {partition[names[2]]}")
    with pytest.raises(DataError, match=re.escape(f"image 3 is {names[3]} there and {names[2]} here")):
        CelebA(root)


def test_missing_pieces_say_where_to_get_celeba(tmp_path, celeba_root):
    root, *_ = celeba_root
    with pytest.raises(DataError, match="does not exist.*mmlab.ie.cuhk.edu.hk"):
        CelebA(tmp_path / "nowhere")
    (root / "list_eval_partition.txt").unlink()
    with pytest.raises(DataError, match=re.escape(str(root / "list_eval_partition.txt")) + ".*never fetched"):
        CelebA(root)


def test_lists_without_images(tmp_path):
    if not (CELEBA / "identity_CelebA.txt").is_file():
        pytest.skip("needs ../shared/data/celeba")
    for f in ("identity_CelebA.txt", "list_eval_partition.txt"):
        shutil.copyfile(CELEBA / f, tmp_path / f)
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "img_align_celeba")) + " is missing"):
        CelebA(tmp_path)
    inv = CelebA.inventory(tmp_path)
    assert inv.missing == [f"{tmp_path / 'img_align_celeba'}/"] and len(inv.found) == 2


def test_grayscale_and_cmyk_images_read_as_rgb(celeba_root):
    Image = pytest.importorskip("PIL.Image")
    root, _, identity, _ = celeba_root
    gray_name, cmyk_name = sorted(identity)[:2]
    gray = (np.arange(218 * 178) % 251).astype(np.uint8).reshape(218, 178)
    Image.fromarray(gray).save(root / "img_align_celeba" / gray_name, format="PNG")  # any codec
    rgb = np.zeros((218, 178, 3), np.uint8)
    rgb[:109], rgb[109:] = (200, 30, 60), (20, 180, 90)
    Image.fromarray(rgb).convert("CMYK").save(root / "img_align_celeba" / cmyk_name, format="JPEG", quality=100)
    assert Image.open(root / "img_align_celeba" / cmyk_name).mode == "CMYK"
    faces = CelebA(root).all_faces()
    g = read_rgb_uint8(faces.paths()[faces.relpaths.index(gray_name)])
    assert g.shape == (218, 178, 3) and all(np.array_equal(g[:, :, c], gray) for c in range(3))
    c = read_rgb_uint8(faces.paths()[faces.relpaths.index(cmyk_name)])
    assert c.shape == (218, 178, 3)
    assert np.abs(c[50, 50].astype(int) - [200, 30, 60]).max() <= 3
    assert np.abs(c[160, 50].astype(int) - [20, 180, 90]).max() <= 3


@pytest.mark.parametrize("lineno,text", [
    (1, "2 three"),                                    # bad header
    (2, "4973\t182707.jpg"),                           # a genuine line with one file
    (2, "4973\t182707.jpg\t4973\t189714.jpg"),         # an impostor line in a genuine slot
    (5, "4973\t182707.jpg\t189714.jpg"),               # a genuine line in an impostor slot
    (3, "x4973\t182707.jpg\t189714.jpg"),              # identity not a number
    (3, "4973\t182707.png\t189714.jpg"),               # not a CelebA file name
])
def test_malformed_pair_list_names_the_line(celeba_root, tmp_path, lineno, text):
    root, *_ = celeba_root
    celeba = CelebA(root)
    out = write_pairs_file(celeba.verification_pairs(0, 6, 6, 2), root / "p.txt")
    lines = out.read_text().splitlines()
    lines[lineno - 1] = text
    out.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=re.escape(f"{out}:{lineno}:")):
        celeba.pairs(out)


def test_missing_pair_list(celeba_root):
    root, *_ = celeba_root
    with pytest.raises(DataError, match=re.escape(str(root / "nope.txt")) + " is missing"):
        CelebA(root).pairs("nope.txt")


def test_pair_list_from_the_lists_alone_matches_the_reader(celeba_root, tmp_path):
    root, *_ = celeba_root
    from_images = write_pairs_file(CelebA(root).verification_pairs(3, 6, 6, 2), tmp_path / "a.txt")
    lists = CelebaLists.load(root)
    from_lists = write_pair_draw(lists, lists.draw_pairs(3, 6, 6, 2), tmp_path / "b.txt")
    assert from_images.read_bytes() == from_lists.read_bytes()


def test_real_pair_list_file(real_lists, real_columns, tmp_path):
    identity, partition = real_columns
    path = write_pair_draw(real_lists, real_lists.draw_pairs(), tmp_path / "celeba_pairs_seed0.txt")
    lines = path.read_text().splitlines()
    assert lines[0] == "10\t300" and len(lines) == 6001
    for k, line in enumerate(lines[1:]):
        f = line.split("\t")
        genuine = (k % 600) < 300
        if genuine:
            assert len(f) == 3 and identity[f[1]] == identity[f[2]] == int(f[0])
        else:
            assert len(f) == 4 and identity[f[1]] == int(f[0]) and identity[f[3]] == int(f[2]) != int(f[0])
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    print(f"celeba_pairs_seed0.txt sha256 {digest}")
    # Pin of the whole published list: any change to the draw or the format shows here.
    assert digest == "66a3c85b6562344b33e7308a71d79488e4ccd577d233aac02320502e12da7529"
