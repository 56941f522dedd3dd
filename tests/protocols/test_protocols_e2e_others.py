"""The CelebA, AR and SCface protocols end to end on small fixtures in each dataset's layout.

How the protocols are run and checked, the fixtures' layouts and the oracles: e2e_protocols.py."""
from collections import Counter
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from benchmark.datasets.celeba import CelebA
from benchmark.faces.landmark_alignment import align_image
from benchmark.datasets.scface import parse_stem
from benchmark.faces.frames import hr_frame
from benchmark.engine.protocols import parse_protocol
from benchmark.faces.templates import ARCFACE_112x112, SPHEREFACE_112x96, FaceTemplate

from conftest import DATA, LFW_ALIGNED
from e2e_protocols import (  # noqa: F401 (calls, oracle: fixtures, used by name)
    bicubic_sr,
    calls,
    CELEBA_LISTS,
    cos,
    exercise,
    knn1_sklearn,
    knn_loop,
    oracle,
    psnr_oracle,
    rank_k,
    rank_of,
    RAW_MINI,
    read_rgb,
    sha,
    SHIPPED,
    smaller_copy,
    ssim_oracle,
    stored_arrays,
    tenfold_loop,
)
from test_scface import SCALE, independent_parse, place, stems_of


# --- CelebA ---------------------------------------------------------------------------------------

def read_list(path):
    return {name: int(v) for name, v in (line.split(" ") for line in path.read_bytes().decode().split("\r\n") if line)}


def raw_mini_people():
    return {p.name: sorted(p.glob("*.jpg")) for p in sorted(RAW_MINI.iterdir()) if p.is_dir()}


@pytest.fixture(scope="module")
def celeba(tmp_path_factory):
    if not (CELEBA_LISTS / "identity_CelebA.txt").is_file() or not RAW_MINI.is_dir():
        pytest.skip("needs ../shared/data/celeba and ../shared/data/lfw-raw-mini")
    identity = read_list(CELEBA_LISTS / "identity_CelebA.txt")
    partition = read_list(CELEBA_LISTS / "list_eval_partition.txt")
    files_of = {}
    for f, i in identity.items():
        files_of.setdefault((partition[f], i), []).append(f)

    def ids(part, count, n):
        return sorted(i for (p, i), fs in files_of.items() if p == part and len(fs) == count)[:n]

    knn_ids, pair_ids, train_ids = ids(2, 4, 5), ids(2, 2, 15), ids(0, 4, 1)
    photos = list(raw_mini_people().values())
    # (identity, partition) -> (LFW person, photo numbers): one real person per knn identity.
    source = {(i, 2): (k, range(4)) for k, i in enumerate(knn_ids)}
    source.update({(i, 2): (k, range(4, 6)) for k, i in enumerate(pair_ids[:5])})
    source.update({(i, 2): (5 + k // 2, range(2 * (k % 2), 2 * (k % 2) + 2)) for k, i in enumerate(pair_ids[5:])})
    source[(train_ids[0], 0)] = (9, range(6, 10))
    root = tmp_path_factory.mktemp("e2e-celeba") / "celeba"
    (root / "img_align_celeba").mkdir(parents=True)
    person = {}
    for (i, part), (k, numbers) in source.items():
        for f, n in zip(sorted(files_of[(part, i)]), numbers):
            photo = cv2.imread(str(photos[k][n]))  # 250x250 BGR; CelebA's size is 178x218
            assert cv2.imwrite(str(root / "img_align_celeba" / f), photo[16:234, 36:214], [cv2.IMWRITE_JPEG_QUALITY, 95])
            person[f] = k
    files = sorted(person)
    (root / "identity_CelebA.txt").write_bytes("".join(f"{f} {identity[f]}\r\n" for f in files).encode())
    (root / "list_eval_partition.txt").write_bytes("".join(f"{f} {partition[f]}\r\n" for f in files).encode())
    return SimpleNamespace(root=root, identity={f: identity[f] for f in files}, partition={f: partition[f] for f in files},
                           knn_ids=knn_ids)


def celeba_faces_x8(celeba, files, oracle):
    """The oracle's (HR faces aligned by MTCNN, their cache keys, bicubic x8 SR) of CelebA files."""
    paths = [celeba.root / "img_align_celeba" / f for f in files]
    hr = oracle.mtcnn_aligned(paths, SPHEREFACE_112x96)
    return hr, [sha(p) for p in paths], bicubic_sr(hr, scale=8)


def test_celeba_knn(shared_data, celeba, tmp_path, proto_dir, calls, oracle):
    smaller_copy(proto_dir, "celeba-knn", "selection_args", images_per_identity=4)
    files = sorted(f for f, i in celeba.identity.items() if i in celeba.knn_ids)  # 5 x 4, test partition
    bic, hr_run = exercise(celeba.root, tmp_path, "celeba-knn", calls, scale=8, n_images=len(files),
                           n_embedded=2 * len(files), n_detected=len(files))
    hr, keys, sr = celeba_faces_x8(celeba, files, oracle)
    labels = np.array([celeba.identity[f] for f in files])
    hr_emb = oracle.embed([(k, "hr") for k in keys], hr, SPHEREFACE_112x96)
    sr_emb = oracle.embed([(k, "x8") for k in keys], sr, SPHEREFACE_112x96)
    for result, emb in ((bic, sr_emb), (hr_run, hr_emb)):
        m = result["metrics"]
        assert m["knn1"] == pytest.approx(knn1_sklearn(emb, labels), abs=1e-12)
        assert m["knn5"] == pytest.approx(knn_loop(emb, labels, 5), abs=1e-12)
        assert m["knn10"] == pytest.approx(knn_loop(emb, labels, 10), abs=1e-12)
        loo = [rank_of(emb[i], labels[i], emb, labels, skip=i) for i in range(len(emb))]
        assert m["rank1"] == pytest.approx(np.mean(np.array(loo) == 1), abs=1e-12)
    m = bic["metrics"]
    assert m["psnr"] == pytest.approx(psnr_oracle(sr, hr).mean(), rel=1e-6)
    assert m["ssim"] == pytest.approx(ssim_oracle(sr, hr).mean(), abs=1e-5)
    assert m["fr_loss"] == pytest.approx(np.linalg.norm(sr_emb - hr_emb, axis=1).mean(), abs=1e-5)
    data = bic["manifest"]["data"]
    assert data["alignment"] == "mtcnn" and data["n_fallback"] == 0


def test_celeba_10fold(shared_data, celeba, tmp_path, proto_dir, calls, oracle):
    smaller_copy(proto_dir, "celeba-10fold", "pairs_args", n_genuine=10, n_impostor=10)
    args = parse_protocol(proto_dir / "celeba-10fold.yaml").options["pairs_args"]
    pairs = CelebA(celeba.root).verification_pairs(**args)  # the seeded draw (its own tests pin it)
    names = pairs.faces.relpaths
    left, right = [names[i] for i in pairs.left], [names[i] for i in pairs.right]
    # The draw as this fixture's lists say it must be: test partition only, same label iff
    # same identity, 1 + 1 pairs per fold, folds disjoint in identity.
    for a, b, s in zip(left, right, pairs.is_same):
        assert celeba.partition[a] == celeba.partition[b] == 2 and (celeba.identity[a] == celeba.identity[b]) == s
    assert Counter(zip(pairs.fold.tolist(), pairs.is_same.tolist())) == {(f, s): 1 for f in range(10) for s in (0, 1)}
    fold_of = {}
    for a, b, f in zip(left, right, pairs.fold):
        for x in (a, b):
            assert fold_of.setdefault(celeba.identity[x], f) == f
    bic, hr_run = exercise(celeba.root, tmp_path, "celeba-10fold", calls, scale=8, n_images=len(names),
                           n_embedded=2 * len(names), n_detected=len(names))
    hr, keys, sr = celeba_faces_x8(celeba, names, oracle)
    same = pairs.is_same
    for result, emb in ((bic, oracle.embed([(k, "x8") for k in keys], sr, SPHEREFACE_112x96)),
                        (hr_run, oracle.embed([(k, "hr") for k in keys], hr, SPHEREFACE_112x96))):
        scores = np.array([cos(emb[a], emb[b]) for a, b in zip(pairs.left, pairs.right)])
        stored = stored_arrays(tmp_path, "celeba-10fold", result["model"])
        np.testing.assert_allclose(stored["pair_scores"], scores, atol=1e-5)  # the saturated accuracy hides little
        np.testing.assert_array_equal(stored["pair_fold"], pairs.fold)
        acc, _ = tenfold_loop(scores, same, pairs.fold)
        assert result["metrics"]["accuracy"] == pytest.approx(acc, abs=1e-12)
        assert result["metrics"]["auc"] == pytest.approx(roc_auc_score(same, scores), abs=1e-12)
    assert bic["metrics"]["psnr"] == pytest.approx(psnr_oracle(sr, hr).mean(), rel=1e-6)
    assert bic["manifest"]["data"]["n_fallback"] == 0


# --- AR -------------------------------------------------------------------------------------------

# subject -> {session: (photo number of its LFW person, file kind)}; subject k is raw-mini person k.
AR_LAYOUT = {"m-001": {14: (0, "raw"), 1: (1, "bmp"), 2: (2, "bmp")},
             "m-002": {1: (1, "bmp")},                      # no session 14: passed over
             "m-003": {14: (0, "bmp"), 1: (1, "bmp")},
             "M-004": {14: (0, "bmp"), 1: (1, "bmp")},      # upper-case file name
             "m-005": {14: (0, "bmp"), 1: (1, "bmp")},
             "w-001": {14: (0, "bmp"), 2: (1, "bmp")},      # no session 01: passed over
             "w-002": {14: (0, "bmp"), 1: (1, "bmp")},
             "w-003": {14: (0, "bmp"), 1: (1, "bmp")},
             "w-004": {14: (0, "bmp"), 1: (1, "bmp")},
             "w-005": {14: (0, "bmp"), 1: (1, "bmp")}}      # a 4th woman: not needed


@pytest.fixture(scope="module")
def ar(tmp_path_factory):
    if not RAW_MINI.is_dir():
        pytest.skip("needs ../shared/data/lfw-raw-mini")
    photos = list(raw_mini_people().values())
    root = tmp_path_factory.mktemp("e2e-ar") / "ar"
    (root / "day2").mkdir(parents=True)
    files = {}
    for k, (subject, sessions) in enumerate(AR_LAYOUT.items()):
        for session, (n, kind) in sessions.items():
            rgb = cv2.imread(str(photos[k][n]))[:, :, ::-1]
            relpath = f"{'day2/' if session >= 14 else ''}{subject}-{session:02d}.{kind}"
            if kind == "raw":  # headerless 768x576 RGB, the face in the middle of a grey frame
                canvas = np.full((576, 768, 3), 90, np.uint8)
                canvas[163:413, 259:509] = rgb
                canvas.tofile(root / relpath)
            else:
                assert cv2.imwrite(str(root / relpath), rgb[:, :, ::-1])
            files[(subject.lower(), session)] = relpath
    return SimpleNamespace(root=root, files=files)


def test_ar_cmc(shared_data, ar, tmp_path, proto_dir, calls, oracle):
    smaller_copy(proto_dir, "ar-cmc", "selection_args", n_men=4, n_women=3)
    spec = parse_protocol(SHIPPED / "ar-cmc.yaml")
    chosen = ["m-001", "m-003", "m-004", "m-005", "w-002", "w-003", "w-004"]  # the first 4 + 3 with both days
    gallery = [ar.root / ar.files[(s, 14)] for s in chosen]
    probes = [ar.root / ar.files[(s, 1)] for s in chosen]
    sizes = [f"{h}x{w}" for h, w in spec.lr_sizes]
    bic, hr_run = exercise(ar.root, tmp_path, "ar-cmc", calls, scale=None, n_images=14,
                           n_embedded=14 + 7 * len(sizes), n_detected=14)  # the gallery stays HR
    assert bic["manifest"]["data"]["notes"] == ["AR m-002 (no session 14) passed over",
                                                "AR w-001 (no session 01) passed over"]
    assert bic["manifest"]["data"]["n_degraded"] == 7 and bic["manifest"]["data"]["n_fallback"] == 0
    # The 128x128 frame by hand: the 112x96 crop padded 8 px each side is the ArcFace 112x112
    # crop; resized to 128x128 with pixel centres mapped as cv2.resize does.
    points = (ARCFACE_112x112.points + 0.5) * (128 / 112) - 0.5
    frame = FaceTemplate("oracle-128x128", 128, 128, tuple(map(tuple, points)))
    np.testing.assert_allclose(hr_frame(SPHEREFACE_112x96, (128, 128)).points, points, atol=1e-9)
    g_hr = oracle.mtcnn_aligned(gallery, frame)
    p_hr = oracle.mtcnn_aligned(probes, frame)
    g_emb = oracle.embed([(sha(p), "hr") for p in gallery], g_hr, frame)
    labels = np.array(chosen)
    for (h, w), name in zip(spec.lr_sizes, sizes):
        p_emb = oracle.embed([(sha(p), name) for p in probes], bicubic_sr(p_hr, size=(h, w)), frame)
        assert bic["metrics"][f"rank1@{name}"] == pytest.approx(rank_k(p_emb, labels, g_emb, labels, 1), abs=1e-12)
        if name == "16x16":
            for k in (5, 10):
                assert bic["metrics"][f"rank{k}@{name}"] == pytest.approx(rank_k(p_emb, labels, g_emb, labels, k),
                                                                         abs=1e-12)
    hr_rank1 = rank_k(oracle.embed([(sha(p), "hr") for p in probes], p_hr, frame), labels, g_emb, labels, 1)
    for name in sizes:  # hr: the probes as they are, whatever the size
        assert hr_run["metrics"][f"rank1@{name}"] == pytest.approx(hr_rank1, abs=1e-12)


# --- SCface ---------------------------------------------------------------------------------------

SC_PEOPLE = ["Colin_Powell", "Donald_Rumsfeld", "George_W_Bush", "Gerhard_Schroeder", "Jacques_Chirac", "Tony_Blair"]
SC_SUBJECTS = [f"{n:03d}" for n in range(1, len(SC_PEOPLE) + 1)]


@pytest.fixture(scope="module")
def scface(tmp_path_factory):
    """test_scface's fixture layout for six subjects (subject n is SC_PEOPLE[n - 1])."""
    if not LFW_ALIGNED.is_dir() or not (DATA / "scface" / "scface_annotations.txt").is_file():
        pytest.skip("needs ../shared/data/lfw and ../shared/data/scface")
    root = tmp_path_factory.mktemp("e2e-scface") / "scface"
    (root / "surveillance_cameras_all").mkdir(parents=True)
    (root / "mugshot_frontal_cropped_all").mkdir()
    lines = []
    for subject, person in zip(SC_SUBJECTS, SC_PEOPLE):
        faces = sorted((LFW_ALIGNED / person).glob("*.jpg"))
        for k, stem in enumerate(stems_of(subject)):  # the real stems: frontal, cam1_1 .. cam7_3, cam8
            _, camera, distance = parse_stem(stem)
            bgr = cv2.imread(str(faces[k % len(faces)]))
            if camera == 0:
                img, pts = place(bgr, 4.0, 20, 30, (424, 520))
                path = root / "mugshot_frontal_cropped_all" / f"{stem}.JPG"
            else:
                img, pts = place(bgr, SCALE[distance] if distance else 1.0, 3 * camera, 2 * camera, (130, 150))
                if camera in (6, 7, 8):  # infrared: grayscale
                    img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
                path = root / "surveillance_cameras_all" / f"{stem}.jpg"
            assert cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 98])
            lines.append(stem + "".join(f"\t{v:.3f}" for v in pts.reshape(-1)))
    (root / "scface_annotations.txt").write_bytes(("\r\n".join(lines) + "\r\n\r\n").encode())
    return root


def scface_embeddings(oracle, root, stems, level):
    """Faces aligned here by the annotation file's points (read with str.split), then
    degraded by hand (``level`` "x8") or not ("hr"); SFace embeddings."""
    marks = independent_parse(root / "scface_annotations.txt")
    paths = [next(root.glob(f"*/{s}.*")) for s in stems]
    hr = np.stack([align_image(read_rgb(p), np.reshape(marks[s], (4, 2)), SPHEREFACE_112x96)
                   for p, s in zip(paths, stems)])
    faces = hr if level == "hr" else bicubic_sr(hr, scale=int(level[1:]))
    keys = [(sha(p), tuple(marks[s]), level) for p, s in zip(paths, stems)]
    return oracle.embed(keys, faces, SPHEREFACE_112x96)


def test_scface_mugshot(shared_data, scface, tmp_path, calls, oracle):
    probes = {d: [f"{s}_cam{c}_{d}" for c in range(1, 6) for s in SC_SUBJECTS] for d in (1, 2, 3)}
    n_gallery, n_probes = len(SC_SUBJECTS), sum(map(len, probes.values()))
    bic, hr_run = exercise(scface, tmp_path, "scface-mugshot", calls, scale=8, n_images=n_gallery + n_probes,
                           n_embedded=n_gallery + 2 * n_probes)  # the mugshots stay HR
    assert bic["manifest"]["data"]["alignment"] == "given landmarks"
    gallery = scface_embeddings(oracle, scface, [f"{s}_frontal" for s in SC_SUBJECTS], "hr")
    labels = np.array(SC_SUBJECTS)
    for result, level in ((bic, "x8"), (hr_run, "hr")):
        per = {}
        for d, name in ((1, "4.20m"), (2, "2.60m"), (3, "1.00m")):
            emb = scface_embeddings(oracle, scface, probes[d], level)
            per[d] = rank_k(emb, np.array([s[:3] for s in probes[d]]), gallery, labels, 1)
            assert result["metrics"][f"rank1@{name}"] == pytest.approx(per[d], abs=1e-12)
        assert result["metrics"]["rank1"] == pytest.approx(np.mean(list(per.values())), abs=1e-12)  # equal groups
    assert "psnr" not in bic["metrics"]  # natural LR: no true HR probe


def test_scface_1m_26m(shared_data, scface, tmp_path, calls, oracle):
    gallery_stems = [f"{s}_cam{c}_3" for c in range(1, 6) for s in SC_SUBJECTS]
    probe_stems = [f"{s}_cam{c}_2" for c in range(1, 6) for s in SC_SUBJECTS]
    n = len(gallery_stems)
    bic, hr_run = exercise(scface, tmp_path, "scface-1m-2.6m", calls, scale=8, n_images=2 * n, n_embedded=3 * n)
    gallery = scface_embeddings(oracle, scface, gallery_stems, "hr")
    g_labels = np.array([s[:3] for s in gallery_stems])
    p_labels = np.array([s[:3] for s in probe_stems])
    for result, level in ((bic, "x8"), (hr_run, "hr")):
        emb = scface_embeddings(oracle, scface, probe_stems, level)
        for k in (1, 5):  # several gallery images per subject: the best mate counts
            assert result["metrics"][f"rank{k}"] == pytest.approx(rank_k(emb, p_labels, gallery, g_labels, k),
                                                                   abs=1e-12)
