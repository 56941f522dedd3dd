"""Every shipped LFW protocol end to end on a small LFW fixture, and the check that every shipped
protocol has an end-to-end test.

How the protocols are run and checked, the fixtures' layouts and the oracles: e2e_protocols.py."""
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.io
from sklearn.metrics import roc_auc_score

from benchmark.faces.resize import imresize
from benchmark.engine.protocols import parse_protocol
from benchmark.faces.templates import SPHEREFACE_112x96

from conftest import LFW_ALIGNED
from e2e_protocols import (  # noqa: F401 (calls, oracle: fixtures, used by name)
    bicubic_sr,
    blufr_loop,
    calls,
    chw01,
    cos,
    COVERED,
    exercise,
    oracle,
    psnr_oracle,
    rank_k,
    read_rgb,
    sha,
    SHIPPED,
    ssim_oracle,
    stored_arrays,
    tenfold_loop,
)


def test_every_shipped_protocol_has_an_end_to_end_test():
    assert {p.stem for p in SHIPPED.glob("*.yaml")} == COVERED


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
