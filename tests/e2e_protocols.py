"""What the end-to-end protocol tests share (test_protocols_e2e_lfw.py and
test_protocols_e2e_others.py): how they run a protocol and check its rows, the fixtures in each
dataset's layout, and the independent oracles.

The tests run every shipped protocol end to end through ``benchmark.engine.runner.run`` (lfw-psnr through the
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
from collections import Counter

import cv2
import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from skimage.metrics import structural_similarity
from sklearn.neighbors import KNeighborsClassifier

from benchmark.engine import runner
from benchmark.cli import main
from benchmark.faces.alignment import MtcnnAligner, warp_face
from benchmark.contracts.degradation import make_degradation
from benchmark.faces.resize import upsample_bicubic
from benchmark.evaluators import create_evaluator
from benchmark.evaluators.sface import SFace
from benchmark.engine.protocols import PROTOCOL_DIRS, parse_protocol
from benchmark.engine.store import ResultStore
from benchmark.faces.templates import SPHEREFACE_112x96, similarity_transform

from conftest import DATA

SHIPPED = PROTOCOL_DIRS[0]
RAW_MINI = DATA / "lfw-raw-mini"
CELEBA_LISTS = DATA / "celeba"
COVERED = {"lfw-10fold", "lfw-blufr", "lfw-ident", "lfw-psnr", "celeba-knn", "celeba-10fold", "ar-cmc",
           "scface-mugshot", "scface-1m-2.6m",
           "lfw-10fold-blind", "lfw-blufr-blind", "celeba-blind"}  # test_protocols_e2e_blind.py


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
    return {"metrics": row.metrics, "manifest": row.manifest, "level": row.level}


def same_metrics(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])), k


def check_row(tmp_path, protocol, model, level):
    """The stored row: at ``level``, every metric the shipped spec lists, finite (hr: PSNR inf,
    SSIM 1, FR loss 0, what identical images give)."""
    (row,) = ResultStore(tmp_path / "r.sqlite").runs(protocol=protocol, model=model)
    assert row.level == level and row.reference == (level == "hr") and row.evaluator == "sface"
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
    assert first["level"] == ("sizes" if lr_sizes else f"x{scale}") and hr["level"] == "hr"
    check_row(tmp_path, protocol, "bicubic", "sizes" if lr_sizes else f"x{scale}")
    check_row(tmp_path, protocol, "hr", "hr")
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
