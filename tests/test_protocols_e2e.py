"""Every shipped protocol end to end through ``benchmark.runner.run`` (lfw-psnr through the
CLI) on small fixtures in each dataset's exact on-disk layout, with ``--model bicubic`` and
``--model hr``.

Per protocol: the stored rows carry every metric of the shipped spec, finite (the hr row's
PSNR is inf by definition; its SSIM is 1 and FR loss 0), at the right scale (hr 1, the
``lr_sizes`` protocols 0); headline metrics equal an oracle computed here from SFace
embeddings (``create_evaluator('sface')``) of faces this file reads, aligns and degrades
itself, scored by brute-force loops or sklearn; the bicubic run, the hr run and a bicubic
re-run select the same data (manifest sha256) and the re-runs are served from the cache
(``SFace.embed`` and MTCNN's ``detect`` counted with monkeypatch, as in test_engine.py).

Fixtures (they need ../shared/data and skip without it):
- LFW: 24 real aligned faces (5 people x 4 images, 2 people x 2) with a pairs.txt of
  10 folds x (2 matched + 2 mismatched), people.txt, and a blufr_lfw_config.mat written here
  in the official layout (imageList cell, uint16 labels, 10-trial 1-based testIndex /
  galIndex / probIndex / trainIndex cells, devTrainIndex, devTestIndex). The shipped
  lfw-* protocols run unchanged. With so few pairs, round(0.001 x impostors) = 0: the BLUFR
  thresholds are the k = 0 case (scores above every impostor).
- CelebA: the real list lines of 21 real identities (5 test identities with exactly 4
  images, 15 with exactly 2, and a 4-image training identity) with lfw-raw-mini photos,
  centre-cropped to CelebA's 178x218, as the images: detected and aligned by MTCNN. Two
  CelebA identities may be one LFW person (10 people, 20 test identities), so a few
  "impostor" pairs are the same face owner; that changes no oracle.
  Smaller copies of the shipped YAML (only these keys differ): celeba-knn
  ``selection_args.images_per_identity: 4`` (shipped 30); celeba-10fold
  ``pairs_args.n_genuine/n_impostor: 10`` (shipped 3000; 10 folds kept).
- AR: m-/w- files (.bmp, one .raw 768x576 canvas, a day-2 subfolder, an upper-case name)
  whose pictures are lfw-raw-mini photos, one LFW person per AR subject: MTCNN-aligned.
  Smaller copy of ar-cmc: ``selection_args: {n_men: 4, n_women: 3, ...}`` (shipped 50 + 50).
- SCface: test_scface's layout and builders (``place``, ``stems_of``: the real stems, aligned
  LFW faces scaled and shifted per camera and distance, an annotation file giving their four
  points) for six subjects: landmark-aligned. scface-mugshot runs at x8, where SFace does
  not find every probe of this fixture (with three subjects, or at x4, it finds all).
"""
import hashlib
import math
import shutil
from collections import Counter
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import scipy.io
import yaml
from click.testing import CliRunner
from skimage.metrics import structural_similarity
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import KNeighborsClassifier

from benchmark import runner
from benchmark.cli import main
from benchmark.data.alignment import MtcnnAligner, warp_face
from benchmark.data.celeba import CelebA
from benchmark.data.landmark_alignment import align_image
from benchmark.data.scface import parse_stem
from benchmark.degrade import imresize, make_degradation, upsample_bicubic
from benchmark.evaluators import create_evaluator
from benchmark.evaluators.sface import SFace
from benchmark.frames import hr_frame
from benchmark.protocols import PROTOCOL_DIRS, parse_protocol
from benchmark.store import ResultStore
from benchmark.templates import ARCFACE_112x112, SPHEREFACE_112x96, FaceTemplate, similarity_transform

from conftest import DATA, LFW_ALIGNED
from test_scface import SCALE, independent_parse, place, stems_of

SHIPPED = PROTOCOL_DIRS[0]
RAW_MINI = DATA / "lfw-raw-mini"
CELEBA_LISTS = DATA / "celeba"
COVERED = {"lfw-10fold", "lfw-blufr", "lfw-ident", "lfw-psnr", "celeba-knn", "celeba-10fold", "ar-cmc",
           "scface-mugshot", "scface-1m-2.6m"}


def test_every_shipped_protocol_has_an_end_to_end_test():
    assert {p.stem for p in SHIPPED.glob("*.yaml")} == COVERED


# --- running, counting, checking rows ---------------------------------------------------------

@pytest.fixture
def calls(monkeypatch):
    """Images per SFace.embed and per MTCNN detect call, in order (the oracle's calls too)."""
    log = {"embed": [], "detect": []}
    real_embed, real_detect = SFace.embed, MtcnnAligner.detect

    def embed(self, images, frame=SPHEREFACE_112x96):
        log["embed"].append(len(images))
        return real_embed(self, images, frame)

    def detect(self, images):
        log["detect"].append(len(images))
        return real_detect(self, images)

    monkeypatch.setattr(SFace, "embed", embed)
    monkeypatch.setattr(MtcnnAligner, "detect", detect)
    return log


def smaller_copy(folder, name, option, **changes):
    """protocols/<name>.yaml with only ``options[option][key]`` changed, into ``folder``."""
    shipped = yaml.safe_load((SHIPPED / f"{name}.yaml").read_text())
    spec = yaml.safe_load((SHIPPED / f"{name}.yaml").read_text())
    assert set(changes) <= set(spec["options"][option])  # only keys the shipped file has
    spec["options"][option].update(changes)
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    written = yaml.safe_load((folder / f"{name}.yaml").read_text())
    differs = {k for k in shipped if shipped[k] != written[k]}
    assert differs == {"options"}
    assert {k for k in shipped["options"] if shipped["options"][k] != written["options"][k]} == {option}


def run_opts(root, tmp_path, model, protocol, scale=None):
    return runner.RunOptions(model=model, protocol=protocol, scale=scale, data_root=str(root),
                             store=str(tmp_path / "r.sqlite"), cache_dir=str(tmp_path / "cache"),
                             progress=False)


def run_cli(root, tmp_path, model, protocol, scale=None):
    args = ["run", "--model", model, "--protocol", protocol, "--data-root", root,
            "--store", tmp_path / "r.sqlite", "--cache-dir", tmp_path / "cache", "--quiet"]
    args += ["--scale", scale] if scale else []
    res = CliRunner().invoke(main, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    (row,) = ResultStore(tmp_path / "r.sqlite").runs(protocol=protocol, model=model)
    return {"metrics": row.metrics, "manifest": row.manifest, "scale": row.scale}


def same_metrics(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])), k


def check_row(tmp_path, protocol, model, scale):
    """The stored row: at ``scale``, every metric the shipped spec lists, finite (hr: PSNR inf,
    SSIM 1, FR loss 0, what identical images give)."""
    (row,) = ResultStore(tmp_path / "r.sqlite").runs(protocol=protocol, model=model)
    assert row.scale == scale and row.evaluator == "sface"
    for name in parse_protocol(SHIPPED / f"{protocol}.yaml").metrics:
        value = row.metrics[name]
        if model == "hr" and name.startswith("psnr"):
            assert value == math.inf
        else:
            assert math.isfinite(value), (name, value)
        if model == "hr" and name.startswith(("ssim", "fr_loss")):
            assert value == (1.0 if name.startswith("ssim") else 0.0)
    return row


def stored_arrays(tmp_path, protocol, model):
    """The arrays of the stored row (a re-run replaces the row, and its id)."""
    store = ResultStore(tmp_path / "r.sqlite")
    (row,) = store.runs(protocol=protocol, model=model)
    return store.arrays(row.id)


def exercise(root, tmp_path, protocol, calls, *, scale, n_images, n_embedded, n_detected=0, cli=False):
    """bicubic, then hr, then bicubic again on one cache; returns (bicubic, hr) results.

    ``n_embedded``: images the first run embeds (HR and SR, counted here from the fixture);
    ``n_detected``: photos MTCNN sees in it. The hr run needs nothing new (HR embeddings
    come from the bicubic run's cache), the re-run nothing at all."""
    go = run_cli if cli else (lambda r, t, m, p, s=None: runner.run(run_opts(r, t, m, p, s)))
    lr_sizes = bool(parse_protocol(SHIPPED / f"{protocol}.yaml").lr_sizes)
    del calls["embed"][:], calls["detect"][:]
    first = go(root, tmp_path, "bicubic", protocol, scale)
    assert (sum(calls["embed"]), sum(calls["detect"])) == (n_embedded, n_detected)
    del calls["embed"][:], calls["detect"][:]
    hr = go(root, tmp_path, "hr", protocol)
    assert calls["embed"] == [] and calls["detect"] == []
    again = go(root, tmp_path, "bicubic", protocol, scale)
    assert calls["embed"] == [] and calls["detect"] == []
    same_metrics(first["metrics"], again["metrics"])
    data = [r["manifest"]["data"] for r in (first, hr, again)]
    assert len({d["sha256"] for d in data}) == 1 and {d["n_images"] for d in data} == {n_images}
    assert first["scale"] == (0 if lr_sizes else scale) and hr["scale"] == 1
    check_row(tmp_path, protocol, "bicubic", 0 if lr_sizes else scale)
    check_row(tmp_path, protocol, "hr", 1)
    return first, hr


# --- oracles ------------------------------------------------------------------------------------

def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_rgb(path):
    """(H, W, 3) uint8 RGB, read here: AR .raw as bytes, the rest with cv2 (BGR -> RGB)."""
    if path.suffix.lower() == ".raw":
        return np.fromfile(path, np.uint8).reshape(576, 768, 3)
    return np.ascontiguousarray(cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1])


def chw01(rgb_list):
    return np.stack([r.transpose(2, 0, 1) for r in rgb_list]).astype(np.float32) / np.float32(255)


def bicubic_sr(hr, scale=None, size=None):
    """What the bicubic model returns: MATLAB bicubic down (8-bit), up to HR size, clipped."""
    lr = make_degradation("bicubic", **({"scale": scale} if scale else {"size": tuple(size)}))(hr)
    return np.clip(upsample_bicubic(lr, hr.shape[-2:]), 0, 1).astype(np.float32)


def y_channel(rgb):
    x = np.asarray(rgb, np.float64)
    return 16 + 65.481 * x[:, 0] + 128.553 * x[:, 1] + 24.966 * x[:, 2]


def psnr_oracle(sr, hr):
    return np.array([10 * np.log10(255.0 ** 2 / np.mean((a - b) ** 2))
                     for a, b in zip(y_channel(sr), y_channel(hr))])


def ssim_oracle(sr, hr):
    return np.array([structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                           data_range=255) for a, b in zip(y_channel(sr), y_channel(hr))])


def cos(a, b):
    return float(np.dot(np.asarray(a, np.float64), np.asarray(b, np.float64)))


def rank_of(probe, label, gallery, gallery_labels, skip=None):
    """1 + wrong-label gallery items scoring >= the best mate (ties count against)."""
    scores = [(cos(probe, g), gl) for k, (g, gl) in enumerate(zip(gallery, gallery_labels)) if k != skip]
    best = max(s for s, gl in scores if gl == label)
    return 1 + sum(1 for s, gl in scores if gl != label and s >= best)


def rank_k(probes, labels, gallery, gallery_labels, k):
    return float(np.mean([rank_of(p, l, gallery, gallery_labels) <= k for p, l in zip(probes, labels)]))


def knn_loop(emb, labels, k):
    """Leave-one-out k-NN: neighbours by descending cosine, then index; majority vote, a tie
    to the label of the earliest-ranked neighbour (identification.py's stated rule)."""
    hits = 0
    for i in range(len(emb)):
        order = sorted((j for j in range(len(emb)) if j != i), key=lambda j: (-cos(emb[i], emb[j]), j))[:k]
        votes = Counter(labels[j] for j in order)
        top = max(votes.values())
        hits += next(labels[j] for j in order if votes[labels[j]] == top) == labels[i]
    return hits / len(emb)


def knn1_sklearn(emb, labels):
    hits = 0
    for i in range(len(emb)):
        rest = np.arange(len(emb)) != i
        clf = KNeighborsClassifier(n_neighbors=1, metric="cosine", algorithm="brute").fit(emb[rest], labels[rest])
        hits += clf.predict(emb[i:i + 1])[0] == labels[i]
    return hits / len(emb)


def tenfold_loop(scores, same, folds):
    """LFW 10-fold by brute force: per test fold, try -inf, every midpoint of the other folds'
    distinct scores and +inf in ascending order; the first best training accuracy wins;
    "same" iff score > threshold. Mean and std (ddof=0) of the test-fold accuracies."""
    accs = []
    for f in range(10):
        train = folds != f
        distinct = sorted(set(scores[train].tolist()))
        candidates = [-math.inf] + [(a + b) / 2 for a, b in zip(distinct, distinct[1:])] + [math.inf]
        best_acc, best_t = -1.0, None
        for t in candidates:
            acc = np.mean((scores[train] > t) == same[train])
            if acc > best_acc:
                best_acc, best_t = acc, t
        accs.append(np.mean((scores[~train] > best_t) == same[~train]))
    return float(np.mean(accs)), float(np.std(accs))


def matlab_round(x):
    return int(math.floor(x + 0.5))


def accept_rule(impostor, k):
    """BLUFR: accept s >= the k-th highest impostor score; k = 0: s above all of them."""
    top = sorted(impostor, reverse=True)
    return (lambda s: s > top[0]) if k == 0 else (lambda s: s >= top[k - 1])


def blufr_loop(emb, labels, trials, vr_far, dir_far):
    """VR and DIR (rank 1) per trial, by loops over the trial's index lists (0-based)."""
    vrs, dirs, ks = [], [], []
    for test, gallery, probes in trials:
        genuine, impostor = [], []
        for a in range(len(test)):
            for b in range(a):
                (genuine if labels[test[a]] == labels[test[b]] else impostor).append(cos(emb[test[a]], emb[test[b]]))
        k = matlab_round(vr_far * len(impostor))
        ok = accept_rule(impostor, k)
        vrs.append(np.mean([ok(s) for s in genuine]))
        known = {labels[g] for g in gallery}
        unknown_best = [max(cos(emb[p], emb[g]) for g in gallery) for p in probes if labels[p] not in known]
        k_dir = matlab_round(dir_far * len(unknown_best))
        ok = accept_rule(unknown_best, k_dir)
        hits = []
        for p in (p for p in probes if labels[p] in known):
            best = max(cos(emb[p], emb[g]) for g in gallery if labels[g] == labels[p])
            hits.append(ok(best) and rank_of(emb[p], labels[p], emb[gallery], labels[gallery]) == 1)
        dirs.append(np.mean(hits))
        ks.append((k, k_dir))
    return np.array(vrs), np.array(dirs), ks


class Oracle:
    """SFace embeddings and MTCNN landmarks computed here, memoised by content for the module."""

    def __init__(self):
        self.evaluator = create_evaluator("sface")
        self.aligner = MtcnnAligner()  # no cache: detection runs here, independently of the runs
        self.embeddings, self.landmarks = {}, {}

    def embed(self, keys, images, frame):
        todo = [i for i, k in enumerate(keys) if (k, frame.name) not in self.embeddings]
        if todo:
            for i, e in zip(todo, self.evaluator.embed(images[todo], frame)):
                self.embeddings[(keys[i], frame.name)] = e
        return np.stack([self.embeddings[(k, frame.name)] for k in keys])

    def mtcnn_aligned(self, paths, template):
        """Each photo: MTCNN's five points, mapped onto ``template`` by the least-squares
        similarity, warped (what alignment.py documents); no fallback expected."""
        rgbs, keys = [read_rgb(p) for p in paths], [sha(p) for p in paths]
        by_size = {}
        for rgb, key in zip(rgbs, keys):
            if key not in self.landmarks:
                by_size.setdefault(rgb.shape, {})[key] = rgb
        for group in by_size.values():
            for key, det in zip(group, self.aligner.detect(np.stack(list(group.values())))):
                assert det.landmarks is not None, f"MTCNN found no face in a fixture photo ({key})"
                self.landmarks[key] = det.landmarks
        return np.stack([warp_face(rgb, similarity_transform(self.landmarks[k], template.points), template.size)
                         for rgb, k in zip(rgbs, keys)])


@pytest.fixture(scope="module")
def oracle():
    return Oracle()


# --- LFW ------------------------------------------------------------------------------------------

LFW_COUNTS = {"Ariel_Sharon": 4, "Colin_Powell": 4, "Donald_Rumsfeld": 4, "George_W_Bush": 4, "Tony_Blair": 4,
              "Hugo_Chavez": 2, "Jacques_Chirac": 2}


def rel(name, k):
    return f"{name}/{name}_{k:04d}.jpg"


def uint16_cells(vectors):
    out = np.empty((len(vectors), 1), dtype=object)
    for i, v in enumerate(vectors):
        out[i, 0] = np.asarray(v, np.uint16).reshape(-1, 1)
    return out


@pytest.fixture(scope="module")
def lfw(tmp_path_factory):
    if not LFW_ALIGNED.is_dir():
        pytest.skip("needs ../shared/data/lfw/aligned-112x96")
    root = tmp_path_factory.mktemp("e2e-lfw") / "lfw"
    for name, n in LFW_COUNTS.items():
        (root / "aligned-112x96" / name).mkdir(parents=True)
        for k in range(1, n + 1):
            shutil.copyfile(LFW_ALIGNED / rel(name, k), root / "aligned-112x96" / rel(name, k))
    (root / "people.txt").write_text(f"1\n{len(LFW_COUNTS)}\n" + "".join(f"{n}\t{c}\n" for n, c in LFW_COUNTS.items()))
    people = list(LFW_COUNTS)
    pairs, lines = [], ["10\t2"]  # (relpath a, relpath b, same, fold), pairs.txt order
    for fold in range(10):
        for j in range(2):
            a = people[(fold + j) % 7]
            k = 2 + (fold + j) % (LFW_COUNTS[a] - 1)
            pairs.append((rel(a, 1), rel(a, k), True, fold))
            lines.append(f"{a}\t1\t{k}")
        for j in range(2):
            a, b = people[(fold + j) % 7], people[(fold + j + 3) % 7]
            ia, ib = 1 + fold % LFW_COUNTS[a], 1 + (fold + 1) % LFW_COUNTS[b]
            pairs.append((rel(a, ia), rel(b, ib), False, fold))
            lines.append(f"{a}\t{ia}\t{b}\t{ib}")
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")

    # BLUFR: imageList deliberately not in folder order; labels are arbitrary numbers per person.
    order = [rel(n, k) for n in reversed(people) for k in range(1, LFW_COUNTS[n] + 1)]
    labels = np.array([30 + 7 * people.index(r.split("/")[0]) for r in order])
    rng = np.random.default_rng(5)
    trials = []
    for _ in range(10):
        test = np.sort(rng.choice(len(order), 18, replace=False))
        present = sorted(set(labels[test].tolist()))
        enrolled = rng.choice(present, 4, replace=False)
        gallery = np.array([test[labels[test] == e][0] for e in enrolled])
        probes = np.setdiff1d(test, gallery)
        assert set(labels[probes]) - set(enrolled) and set(labels[probes]) & set(enrolled)  # both kinds
        trials.append((test, np.sort(gallery), probes))
    image_list = np.empty((len(order), 1), dtype=object)
    image_list[:, 0] = [r.split("/")[1] for r in order]
    scipy.io.savemat(root / "blufr_lfw_config.mat", {
        "imageList": image_list, "labels": labels.astype(np.uint16).reshape(-1, 1),
        "trainIndex": uint16_cells([np.setdiff1d(np.arange(len(order)), t) + 1 for t, _, _ in trials]),
        "testIndex": uint16_cells([t + 1 for t, _, _ in trials]),
        "galIndex": uint16_cells([g + 1 for _, g, _ in trials]),
        "probIndex": uint16_cells([p + 1 for _, _, p in trials]),
        "devTrainIndex": np.arange(1, 13, dtype=np.uint16).reshape(-1, 1),
        "devTestIndex": np.arange(13, 25, dtype=np.uint16).reshape(-1, 1)})
    return SimpleNamespace(root=root, pairs=pairs, blufr_order=order, blufr_labels=labels, trials=trials)


def lfw_faces(lfw, rels):
    paths = [lfw.root / "aligned-112x96" / r for r in rels]
    return chw01([read_rgb(p) for p in paths]), [sha(p) for p in paths]


def test_lfw_10fold(lfw_shared, lfw, tmp_path, calls, oracle):
    used = list(dict.fromkeys(r for a, b, _, _ in lfw.pairs for r in (a, b)))
    bic, hr_run = exercise(lfw.root, tmp_path, "lfw-10fold", calls, scale=8, n_images=len(used),
                           n_embedded=2 * len(used))
    hr, keys = lfw_faces(lfw, used)
    sr = bicubic_sr(hr, scale=8)
    index = {r: i for i, r in enumerate(used)}
    same = np.array([p[2] for p in lfw.pairs])
    folds = np.array([p[3] for p in lfw.pairs])
    for result, emb in ((bic, oracle.embed([(k, "x8") for k in keys], sr, SPHEREFACE_112x96)),
                        (hr_run, oracle.embed([(k, "hr") for k in keys], hr, SPHEREFACE_112x96))):
        scores = np.array([cos(emb[index[a]], emb[index[b]]) for a, b, _, _ in lfw.pairs])  # sr-sr
        stored = stored_arrays(tmp_path, "lfw-10fold", result["model"])
        np.testing.assert_allclose(stored["pair_scores"], scores, atol=1e-5)  # pair by pair, in pairs.txt order
        acc, acc_std = tenfold_loop(scores, same, folds)
        m = result["metrics"]
        assert m["accuracy"] == pytest.approx(acc, abs=1e-12)
        assert m["accuracy_std"] == pytest.approx(acc_std, abs=1e-12)
        assert m["auc"] == pytest.approx(roc_auc_score(same, scores), abs=1e-12)
    assert bic["metrics"]["psnr"] == pytest.approx(psnr_oracle(sr, hr).mean(), rel=1e-9)
    assert bic["metrics"]["ssim"] == pytest.approx(ssim_oracle(sr, hr).mean(), abs=1e-6)
    assert bic["manifest"]["data"]["alignment"] == "pre-aligned"


def test_lfw_blufr(lfw_shared, lfw, tmp_path, calls, oracle):
    n = len(lfw.blufr_order)
    bic, hr_run = exercise(lfw.root, tmp_path, "lfw-blufr", calls, scale=8, n_images=n, n_embedded=2 * n)
    hr, keys = lfw_faces(lfw, lfw.blufr_order)
    spec = parse_protocol(SHIPPED / "lfw-blufr.yaml").options
    for result, emb in ((bic, oracle.embed([(k, "x8") for k in keys], bicubic_sr(hr, scale=8), SPHEREFACE_112x96)),
                        (hr_run, oracle.embed([(k, "hr") for k in keys], hr, SPHEREFACE_112x96))):
        vr, dir_, ks = blufr_loop(emb, lfw.blufr_labels, lfw.trials, spec["vr_far"], spec["dir_far"])
        assert {k for pair in ks for k in pair} == {0}  # the tiny set's false-alarm counts (docstring)
        m = result["metrics"]
        assert m["vr"] == pytest.approx(vr.mean(), abs=1e-12)
        assert m["vr_std"] == pytest.approx(vr.std(ddof=1), abs=1e-12)
        assert m["vr_lower"] == pytest.approx(vr.mean() - vr.std(ddof=1), abs=1e-12)
        assert m["dir"] == pytest.approx(dir_.mean(), abs=1e-12)
        assert m["dir_lower"] == pytest.approx(dir_.mean() - dir_.std(ddof=1), abs=1e-12)
    assert 0 < bic["metrics"]["vr"] < 1 or 0 < bic["metrics"]["dir"] < 1  # not a degenerate fixture


def gallery_draw(labels, seed, repeat):
    """lfw-ident's split, written from its documented rule: one uniform key per face from
    PCG64([seed, repeat]); each person's smallest key is the gallery, the rest are probes."""
    keys = np.random.Generator(np.random.PCG64([seed, repeat])).random(len(labels))
    gallery = [min(np.flatnonzero(labels == lab), key=lambda i: keys[i]) for lab in sorted(set(labels))]
    return np.sort(gallery), np.setdiff1d(np.arange(len(labels)), gallery)


def test_lfw_ident(lfw_shared, lfw, tmp_path, calls, oracle):
    spec = parse_protocol(SHIPPED / "lfw-ident.yaml")
    kept = [rel(n, k) for n in sorted(LFW_COUNTS) if LFW_COUNTS[n] >= spec.options["selection_args"]["min_images"]
            for k in range(1, LFW_COUNTS[n] + 1)]  # 5 people x 4; the 2-image people are left out
    bic, hr_run = exercise(lfw.root, tmp_path, "lfw-ident", calls, scale=None, n_images=len(kept),
                           n_embedded=len(kept) * (1 + len(spec.lr_sizes)))
    hr, keys = lfw_faces(lfw, kept)
    labels = np.array([r.split("/")[0] for r in kept])
    hr_emb = oracle.embed([(k, "hr") for k in keys], hr, SPHEREFACE_112x96)
    sr_emb = oracle.embed([(k, "16x14") for k in keys], bicubic_sr(hr, size=(16, 14)), SPHEREFACE_112x96)
    per_repeat = {"bicubic": [], "hr": []}
    for repeat in range(spec.options["repeats"]):
        g, p = gallery_draw(labels, spec.options["seed"], repeat)
        per_repeat["bicubic"].append(rank_k(sr_emb[p], labels[p], hr_emb[g], labels[g], 1))
        per_repeat["hr"].append(rank_k(hr_emb[p], labels[p], hr_emb[g], labels[g], 1))
    assert bic["metrics"]["rank1@16x14"] == pytest.approx(np.mean(per_repeat["bicubic"]), abs=1e-12)
    assert bic["metrics"]["rank1@16x14_std"] == pytest.approx(np.std(per_repeat["bicubic"]), abs=1e-12)
    for size in ("7x6", "14x12", "16x14", "18x16"):  # hr: no degradation at any size
        assert hr_run["metrics"][f"rank1@{size}"] == pytest.approx(np.mean(per_repeat["hr"]), abs=1e-12)
    assert "rank1" not in bic["metrics"] and "psnr" not in bic["metrics"]


def test_lfw_psnr_through_the_cli(lfw_shared, lfw, tmp_path, calls):
    n = len(lfw.blufr_order)
    bic, _ = exercise(lfw.root, tmp_path, "lfw-psnr", calls, scale=8, n_images=n, n_embedded=2 * n, cli=True)
    rels = [rel(name, k) for name in sorted(LFW_COUNTS) for k in range(1, LFW_COUNTS[name] + 1)]
    small, _ = lfw_faces(lfw, rels)
    # 112x96 padded with 8 black columns each side (the 112x112 ArcFace crop), then MATLAB
    # bicubic to 192x192; 24x24 LR.
    hr = np.clip(imresize(np.pad(small, ((0, 0), (0, 0), (0, 0), (8, 8))), output_size=(192, 192)), 0, 1)
    sr = bicubic_sr(hr, scale=8)
    assert bic["manifest"]["data"]["lr_sizes"] == {"x8": [24, 24]} and bic["manifest"]["data"]["hr_size"] == [192, 192]
    assert bic["metrics"]["psnr"] == pytest.approx(psnr_oracle(sr, hr).mean(), rel=1e-9)
    assert bic["metrics"]["psnr_std"] == pytest.approx(psnr_oracle(sr, hr).std(), rel=1e-6)
    assert bic["metrics"]["ssim"] == pytest.approx(ssim_oracle(sr, hr).mean(), abs=1e-6)


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
