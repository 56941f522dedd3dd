"""The protocol engine beyond one scale: LR-size levels, HR sizes, an HR gallery with SR probes,
the per-image cache shared by protocols, and ``--protocol all``. Runs on the ``tiny_lfw`` root
(conftest: 24 images of 8 people), with toy protocols written per test; every expected number
is recomputed here from the images, independently of the runner."""
import sqlite3
import textwrap

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from benchmark.engine import runner
from benchmark.cli import main
from benchmark.faces.gallery_probe import GalleryProbe
from benchmark.faces.images import read_batch
from benchmark.contracts.degradation import make_degradation
from benchmark.faces.resize import upsample_bicubic
from benchmark.errors import ConfigError, IncompatibleModelError
from benchmark.evaluators import create_evaluator
from benchmark.evaluators.sface import SFace
from benchmark.metrics.identification import gallery_probe_split
from benchmark.metrics.image import psnr_y
from benchmark.registry import DATASETS
from conftest import pairs_txt_images


def add_protocol(folder, name, **spec):
    base = {"name": name, "summary": "toy", "dataset": "lfw", "degradation": "bicubic"}
    (folder / f"{name}.yaml").write_text(yaml.safe_dump({**base, **spec}))


def options(root, tmp_path, **kw):
    return runner.RunOptions(**{"model": "bicubic", "protocol": "x", "data_root": str(root),
                                "store": str(tmp_path / "r.sqlite"), "cache_dir": str(tmp_path / "cache"),
                                "progress": False, **kw})


def images_of(root, relpaths):
    return read_batch([root / "aligned-112x96" / r for r in relpaths])


def cosine_rank1(gallery, gallery_labels, probes, probe_labels):
    """Brute force: a probe is right at rank 1 when no wrong-label gallery face scores >= its
    best same-label score (ties count against, as DESIGN.md's tie rule says)."""
    hits = 0
    for p, label in zip(probes, probe_labels):
        scores = [float(np.dot(p, g)) for g in gallery]
        best_mate = max(s for s, gl in zip(scores, gallery_labels) if gl == label)
        hits += not any(s >= best_mate for s, gl in zip(scores, gallery_labels) if gl != label)
    return hits / len(probes)


def test_lr_sizes_run_every_size_in_one_run(tiny_lfw, tmp_path, proto_dir):
    add_protocol(proto_dir, "toy-sizes", task="pairs-10fold", lr_sizes=[[14, 12], [28, 24]],
                 metrics=["accuracy@14x12", "accuracy@28x24", "psnr@14x12"], primary_metric="accuracy@28x24")
    result = runner.run(options(tiny_lfw, tmp_path, protocol="toy-sizes"))
    assert result["level"] == "sizes" and result["scale"] is None  # one row over every LR size
    m = result["metrics"]
    hr = read_batch(pairs_txt_images(tiny_lfw))
    for size in ((14, 12), (28, 24)):
        sr = np.clip(upsample_bicubic(make_degradation("bicubic", size=size)(hr), (112, 96)), 0, 1)
        assert m[f"psnr@{size[0]}x{size[1]}"] == pytest.approx(psnr_y(sr, hr).mean(), rel=1e-9)
        assert 0.0 <= m[f"accuracy@{size[0]}x{size[1]}"] <= 1.0
    assert m["psnr@14x12"] < m["psnr@28x24"]  # fewer LR pixels, worse reconstruction
    assert "accuracy" not in m and "psnr" not in m
    manifest = result["manifest"]
    assert manifest["data"]["lr_sizes"] == {"14x12": (14, 12), "28x24": (28, 24)}

    with pytest.raises(ConfigError, match=r"runs every LR size of its own \(14x12, 28x24\).*leave out --scale"):
        runner.run(options(tiny_lfw, tmp_path, protocol="toy-sizes", scale=4))
    hr_run = runner.run(options(tiny_lfw, tmp_path, protocol="toy-sizes", model="hr"))
    assert hr_run["level"] == "hr" and hr_run["metrics"]["psnr@14x12"] == np.inf
    assert hr_run["metrics"]["accuracy@14x12"] == hr_run["metrics"]["accuracy@28x24"]


def test_a_model_of_fixed_scale_is_refused_before_any_work(tiny_lfw, tmp_path, proto_dir, monkeypatch):
    add_protocol(proto_dir, "toy-sizes", task="pairs-10fold", lr_sizes=[[14, 12]],
                 metrics=["accuracy@14x12"], primary_metric="accuracy@14x12")
    (tmp_path / "fourx.py").write_text(textwrap.dedent("""
        import torch
        from benchmark.contracts.model import SRAdapter
        class FourTimes(SRAdapter):
            name, scale = "fourx", 4
            def __init__(self, **_):
                pass
            def super_resolve(self, lr, keys):
                return torch.nn.functional.interpolate(lr, scale_factor=4, mode="nearest")
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    calls = []
    monkeypatch.setattr(SFace, "embed", lambda *a, **k: calls.append(1))
    with pytest.raises(IncompatibleModelError, match=r"fourx upsamples 4x, but the protocol turns 14x12 LR faces "
                                                     r"into 112x96 HR faces"):
        runner.run(options(tiny_lfw, tmp_path, protocol="toy-sizes", model="fourx:FourTimes"))
    assert calls == []


def test_hr_size_pads_to_the_aspect_then_resizes(tiny_lfw, tmp_path, proto_dir):
    # 112x112: the 112x96 crop padded with 8 black columns each side, no resampling
    add_protocol(proto_dir, "toy-square", task="image-quality", scales=[4], default_scale=4,
                 hr_size=[112, 112], metrics=["psnr", "ssim"], primary_metric="psnr")
    result = runner.run(options(tiny_lfw, tmp_path, protocol="toy-square", scale=4))
    relpaths = sorted(str(p.relative_to(tiny_lfw / "aligned-112x96"))
                      for p in (tiny_lfw / "aligned-112x96").rglob("*.jpg"))
    hr = np.pad(images_of(tiny_lfw, relpaths), ((0, 0), (0, 0), (0, 0), (8, 8)))
    sr = np.clip(upsample_bicubic(make_degradation("bicubic", scale=4)(hr), (112, 112)), 0, 1)
    assert result["metrics"]["psnr"] == pytest.approx(psnr_y(sr, hr).mean(), rel=1e-9)
    assert result["manifest"]["data"]["hr_size"] == (112, 112)
    assert result["manifest"]["data"]["frame"] == "sphereface-112x96+pad"


@pytest.fixture
def gallery_probe_dataset():
    """A dataset 'toy-gp' over an LFW root: image 1 of each person is the gallery, images 2
    and 3 the probes; each probe's image number is its group."""
    from dataclasses import dataclass

    from benchmark.datasets.lfw import LFW
    from benchmark.faces.selections import selection

    @dataclass
    class ToySplit(GalleryProbe):
        image_number: list = None  # probe_groups may name declared per-probe fields only

    class ToyGalleryProbe(LFW):
        @selection  # protocols may name marked selections only
        def split(self):
            faces = self.all_faces()
            number = np.array([int(r[-8:-4]) for r in faces.relpaths])
            gallery, probe = faces.subset(np.flatnonzero(number == 1)), faces.subset(np.flatnonzero(number > 1))
            return ToySplit(gallery, probe, ["toy"], [int(r[-5]) for r in probe.relpaths])

    DATASETS.add("toy-gp", ToyGalleryProbe)
    yield "toy-gp"
    DATASETS._entries.pop("toy-gp")


def test_hr_gallery_against_sr_probes_with_groups(tiny_lfw, tmp_path, proto_dir, gallery_probe_dataset):
    add_protocol(proto_dir, "toy-gp", dataset=gallery_probe_dataset, task="gallery-probe", scales=[4],
                 default_scale=4, options={"selection": "split", "max_rank": 5, "probe_groups": "image_number",
                          "group_names": {2: "a", 3: "b"}},
                 metrics=["rank1", "rank1@a", "rank1@b"], primary_metric="rank1")
    result = runner.run(options(tiny_lfw, tmp_path, protocol="toy-gp", scale=4))
    people = sorted(p.name for p in (tiny_lfw / "aligned-112x96").iterdir())
    gallery = [f"{n}/{n}_0001.jpg" for n in people]
    probes = {g: [f"{n}/{n}_000{g}.jpg" for n in people] for g in (2, 3)}
    ev = create_evaluator("sface")
    g_emb = ev.embed(images_of(tiny_lfw, gallery))  # the gallery stays HR
    expected = {}
    for g, rel in probes.items():
        sr = np.clip(upsample_bicubic(make_degradation("bicubic", scale=4)(images_of(tiny_lfw, rel)), (112, 96)), 0, 1)
        expected[g] = cosine_rank1(g_emb, people, ev.embed(sr), people)
    m = result["metrics"]
    assert m["rank1@a"] == pytest.approx(expected[2], abs=1e-12)
    assert m["rank1@b"] == pytest.approx(expected[3], abs=1e-12)
    assert m["rank1"] == pytest.approx((expected[2] + expected[3]) / 2, abs=1e-12)
    # image metrics cover the probes only (the gallery is not degraded)
    assert result["manifest"]["data"]["n_degraded"] == 16 and len(_arrays(tmp_path, "psnr")) == 16


def _arrays(tmp_path, name):
    import io
    with sqlite3.connect(tmp_path / "r.sqlite") as con:
        (blob,) = con.execute("SELECT data FROM arrays WHERE name = ?", (name,)).fetchone()
    return np.load(io.BytesIO(blob))


def test_random_gallery_repeats(tiny_lfw, tmp_path, proto_dir):
    add_protocol(proto_dir, "toy-ident", task="gallery-probe", lr_sizes=[[28, 24]],
                 options={"selection": "people", "selection_args": {"min_images": 3}, "repeats": 3, "seed": 7,
                          "max_rank": 5},
                 metrics=["rank1@28x24", "rank1@28x24_std"], primary_metric="rank1@28x24")
    result = runner.run(options(tiny_lfw, tmp_path, protocol="toy-ident"))
    relpaths = sorted(str(p.relative_to(tiny_lfw / "aligned-112x96"))
                      for p in (tiny_lfw / "aligned-112x96").rglob("*.jpg"))
    labels = np.array([r.split("/")[0] for r in relpaths])
    ev = create_evaluator("sface")
    hr = images_of(tiny_lfw, relpaths)
    hr_emb = ev.embed(hr)
    sr_emb = ev.embed(np.clip(upsample_bicubic(make_degradation("bicubic", size=(28, 24))(hr), (112, 96)), 0, 1))
    per_repeat = []
    for repeat in range(3):
        gallery, probes = gallery_probe_split(labels, seed=7, repeat=repeat)
        per_repeat.append(cosine_rank1(hr_emb[gallery], labels[gallery], sr_emb[probes], labels[probes]))
    m = result["metrics"]
    assert m["rank1@28x24"] == pytest.approx(np.mean(per_repeat), abs=1e-12)
    assert m["rank1@28x24_std"] == pytest.approx(np.std(per_repeat), abs=1e-12)


def test_cache_is_shared_by_protocols_over_the_same_images(tiny_lfw, tmp_path, proto_dir, monkeypatch):
    add_protocol(proto_dir, "toy-quality", task="image-quality", scales=[4], default_scale=4,
                 metrics=["psnr"], primary_metric="psnr")
    embedded = []
    real_embed = SFace.embed

    def counting_embed(self, images, frame=None):
        embedded.append(len(images))
        return real_embed(self, images, frame)

    monkeypatch.setattr(SFace, "embed", counting_embed)
    first = runner.run(options(tiny_lfw, tmp_path, protocol="lfw-10fold", scale=4))
    assert sum(embedded) == 2 * 24  # HR and SR of each of the 24 images the pairs name
    embedded.clear()
    second = runner.run(options(tiny_lfw, tmp_path, protocol="toy-quality", scale=4))
    assert embedded == []  # all 24 images were computed for lfw-10fold
    assert second["metrics"]["psnr"] == pytest.approx(first["metrics"]["psnr"], rel=1e-12)
    runner.run(options(tiny_lfw, tmp_path, protocol="lfw-10fold", scale=2))
    assert sum(embedded) == 24  # another degradation: only the SR side is new


def test_protocol_all_runs_what_the_data_allows_and_says_why_not(tiny_lfw, tmp_path, monkeypatch):
    monkeypatch.delenv("FHBENCH_PROTOCOLS", raising=False)
    res = CliRunner().invoke(main, ["run", "--model", "bicubic", "--protocol", "all", "--scale", "4",
                                    "--data-root", str(tiny_lfw), "--store", str(tmp_path / "r.sqlite"),
                                    "--cache-dir", str(tmp_path / "cache"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "bicubic on lfw-10fold (x4" in res.output
    assert "skipped lfw-blufr:" in res.output and "blufr_lfw_config.mat" in res.output
    assert "skipped lfw-psnr: runs at scales [8], not 4" in res.output
    with sqlite3.connect(tmp_path / "r.sqlite") as con:
        stored = {r[0] for r in con.execute("SELECT protocol FROM runs")}
    assert "lfw-10fold" in stored and "lfw-blufr" not in stored


def test_nearest_without_a_scale_fills_the_hr_size(tiny_lfw, tmp_path, proto_dir):
    add_protocol(proto_dir, "toy-sizes", task="image-quality", lr_sizes=[[14, 12], [16, 14]],
                 metrics=["psnr@14x12"], primary_metric="psnr@14x12")
    result = runner.run(options(tiny_lfw, tmp_path, protocol="toy-sizes", model="nearest"))
    relpaths = sorted(str(p.relative_to(tiny_lfw / "aligned-112x96"))
                      for p in (tiny_lfw / "aligned-112x96").rglob("*.jpg"))
    hr = images_of(tiny_lfw, relpaths)
    for h, w in ((14, 12), (16, 14)):
        lr = make_degradation("bicubic", size=(h, w))(hr)
        # pixel replication by hand: output pixel (y, x) takes LR pixel (floor(y h / 112), floor(x w / 96))
        rows, cols = (np.arange(112) * h) // 112, (np.arange(96) * w) // 96
        sr = lr[:, :, rows][:, :, :, cols]
        assert result["metrics"][f"psnr@{h}x{w}"] == pytest.approx(psnr_y(sr, hr).mean(), rel=1e-9)
