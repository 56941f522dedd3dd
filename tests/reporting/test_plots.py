"""Figures from a store filled with synthetic runs: every kind in PDF, PNG and SVG at the
two-column-paper size; the plotted data equals the stored arrays (ROC against sklearn,
CSD against a brute-force count); stable colours; the bad-input messages; sample grids."""
import hashlib
import re
import xml.etree.ElementTree as ET

import cv2
import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from PIL import Image
from sklearn.metrics import roc_curve

from benchmark.reporting import plots
from benchmark.cli import main
from benchmark.errors import FhbenchError
from benchmark.reporting.samples import ModelSpec, render_samples, stored_models
from benchmark.engine.store import ResultStore
from conftest import lines_by_label

N_PAIRS_PER_FOLD, N_IMAGES, N_RANKS, N_TRIALS = 6, 30, 12, 10
BLUFR_FARS = np.array([1e-4, 1e-3, 1e-2, 1e-1, 1.0])
TOY_PROTOCOLS = {
    "toy-ident": {"metrics": ["rank1", "psnr", "ssim"], "primary_metric": "rank1"},
    "toy-blufr": {"metrics": ["vr", "vr_std", "dir", "dir_std"], "primary_metric": "vr"},
}


def pair_arrays(rng, quality):
    """Pairs in 10 folds; genuine scores rise with ``quality``."""
    fold = np.repeat(np.arange(10), N_PAIRS_PER_FOLD)
    same = np.tile([True, True, True, False, False, False], 10)
    scores = np.where(same, quality, 0.0) + rng.normal(0, 0.3, len(same))
    return {"pair_scores": scores, "pair_is_same": same, "pair_fold": fold}


def image_arrays(rng, psnr_mean):
    return {"psnr": rng.normal(psnr_mean, 2, N_IMAGES), "ssim": rng.uniform(0.4, 0.9, N_IMAGES),
            "fr_loss": rng.uniform(0.5, 1.5, N_IMAGES)}


def lfw_metrics(acc, psnr):
    return {"accuracy": acc, "accuracy_std": 0.02, "auc": acc, "eer": 1 - acc, "psnr": psnr, "psnr_std": 2.0,
            "ssim": 0.7, "ssim_std": 0.1, "fr_loss": 1.0, "fr_loss_std": 0.2}


@pytest.fixture
def toy_protocols(tmp_path, monkeypatch):
    folder = tmp_path / "protocols"
    folder.mkdir()
    for name, extra in TOY_PROTOCOLS.items():
        spec = {"name": name, "summary": f"synthetic {name}", "dataset": "lfw", "task": "pairs-10fold",
                "degradation": "bicubic", "scales": [4, 8], "default_scale": 8, **extra}
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(spec))
    monkeypatch.setenv("FHBENCH_PROTOCOLS", str(folder))


@pytest.fixture
def store(tmp_path, toy_protocols):
    """lfw-10fold: hr, bicubic x4/x8, alpha x4/x8, beta x8 (sface); toy-ident (CMC) and
    toy-blufr (VR/DIR curves): hr and alpha x8."""
    rng = np.random.default_rng(0)
    st = ResultStore(tmp_path / "r.sqlite")
    lfw = [("hr", "hr", 0.99, 3.0, np.inf), ("bicubic", 4, 0.9, 1.0, 28.0), ("bicubic", 8, 0.8, 0.6, 24.0),
           ("alpha", 4, 0.95, 1.5, 30.0), ("alpha", 8, 0.85, 1.0, 26.0), ("beta", 8, 0.87, 1.2, 25.0)]
    for model, scale, acc, quality, psnr in lfw:
        arrays = {**pair_arrays(rng, quality), **image_arrays(rng, 25 if np.isinf(psnr) else psnr)}
        if model == "hr":
            arrays["psnr"][:] = np.inf
        st.save(model, "lfw-10fold", scale, "sface", lfw_metrics(acc, psnr), {"model": {"spec": model}}, arrays)
    for model, scale in (("hr", "hr"), ("alpha", 8)):
        cmc = np.sort(rng.uniform(0.3, 1.0, (3, N_RANKS)), axis=1)  # 3 repeats
        st.save(model, "toy-ident", scale, "sface", {"rank1": float(cmc[:, 0].mean())}, {},
                {"cmc": cmc, **image_arrays(rng, 27)})
        vr = np.sort(rng.uniform(0.2, 1.0, (N_TRIALS, len(BLUFR_FARS))), axis=1)
        dr = np.sort(rng.uniform(0.1, 0.9, (N_TRIALS, len(BLUFR_FARS))), axis=1)
        st.save(model, "toy-blufr", scale, "sface", {"vr": 0.5, "dir": 0.4}, {},
                {"vr_curve_far": BLUFR_FARS, "vr_curve": vr, "dir_curve_far": BLUFR_FARS, "dir_curve": dr})
    return st


KINDS = [("roc", "lfw-10fold", {"scale": 8, "log_far": True}), ("csd", "lfw-10fold", {"scale": 8, "metric": "ssim"}),
         ("scale", "lfw-10fold", {}), ("cmc", "toy-ident", {}), ("vr", "toy-blufr", {}), ("dir", "toy-blufr", {})]


@pytest.mark.parametrize("kind,protocol,options", KINDS, ids=[k[0] for k in KINDS])
def test_every_kind_in_every_format(store, tmp_path, kind, protocol, options):
    fig = plots.draw(kind, store, protocol, **options)
    for suffix in (".png", ".pdf", ".svg"):
        path = plots.save_figure(fig, tmp_path / f"fig{suffix}")
        assert path.is_file() and path.stat().st_size > 1000
    with Image.open(tmp_path / "fig.png") as im:  # 3.5 x 2.6 in at 300 dpi, exactly
        assert im.size == (1050, 780)
        assert len(im.getcolors(1 << 24)) > 10  # something is drawn
    pdf = (tmp_path / "fig.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and b"/MediaBox [ 0 0 252 187.2 ]" in pdf
    assert b"/FontFile2" in pdf  # TrueType text (fonttype 42), not outlines
    svg = ET.parse(tmp_path / "fig.svg").getroot()
    sizes = {float(m) for t in svg.iter("{http://www.w3.org/2000/svg}text")  # text stays text
             for m in re.findall(r"font-size: ([0-9.]+)px", t.get("style", ""))}
    assert {7.0, 8.0} <= sizes and max(sizes) == 8.0  # 8 pt labels, 7 pt ticks (1 SVG px = 1 pt here)


def test_roc_points_equal_sklearn(store):
    fig = plots.plot_roc(store, "lfw-10fold", scale=8)
    lines = lines_by_label(fig)
    assert list(lines) == ["HR (no degradation)", "alpha", "beta", "Bicubic (no SR)"]
    runs = {r.model: r for r in store.runs(protocol="lfw-10fold")}
    for model, label in (("hr", "HR (no degradation)"), ("beta", "beta")):
        arr = store.arrays(runs[model].id)
        fpr, tpr, _ = roc_curve(arr["pair_is_same"], arr["pair_scores"], drop_intermediate=False)
        assert np.allclose(lines[label].get_xdata(), fpr) and np.allclose(lines[label].get_ydata(), tpr)
    log_lines = lines_by_label(plots.plot_roc(store, "lfw-10fold", scale=8, log_far=True))
    arr = store.arrays(runs["beta"].id)
    fpr, tpr, _ = roc_curve(arr["pair_is_same"], arr["pair_scores"], drop_intermediate=False)
    assert np.allclose(log_lines["beta"].get_xdata(), fpr[fpr > 0])
    assert np.allclose(log_lines["beta"].get_ydata(), tpr[fpr > 0])


def test_cmc_and_blufr_lines_equal_the_arrays(store):
    runs = {(r.protocol, r.model): r for r in store.runs()}
    lines = lines_by_label(plots.plot_cmc(store, "toy-ident"))
    cmc = store.arrays(runs["toy-ident", "alpha"].id)["cmc"]
    assert np.array_equal(lines["alpha"].get_xdata(), np.arange(1, N_RANKS + 1))
    assert np.allclose(lines["alpha"].get_ydata(), [np.mean(cmc[:, r]) for r in range(N_RANKS)])
    short = lines_by_label(plots.plot_cmc(store, "toy-ident", max_rank=5))
    assert len(short["alpha"].get_xdata()) == 5
    for kind in ("vr", "dir"):
        fig = plots.plot_blufr(store, "toy-blufr", kind)
        arr = store.arrays(runs["toy-blufr", "alpha"].id)
        line = lines_by_label(fig)["alpha"]
        assert np.array_equal(line.get_xdata(), BLUFR_FARS)
        assert np.allclose(line.get_ydata(), [np.mean(arr[f"{kind}_curve"][:, j]) for j in range(len(BLUFR_FARS))])
        assert fig.axes[0].get_xscale() == "log"
        assert len(fig.axes[0].collections) == 2  # one +- std band per run


def test_csd_equals_brute_force_count(store):
    run = [r for r in store.runs(protocol="lfw-10fold", level=8) if r.model == "alpha"][0]
    psnr = store.arrays(run.id)["psnr"]
    lines = lines_by_label(plots.plot_csd(store, "lfw-10fold", "psnr", scale=8))
    assert "HR (no degradation)" not in lines  # identical images have no distribution
    x, y = lines["alpha"].get_xdata(), lines["alpha"].get_ydata()
    assert np.array_equal(x, np.sort(psnr))
    for xi, yi in zip(x, y):
        assert yi == sum(1 for v in psnr if v >= xi) / len(psnr)
    assert lines["alpha"].get_drawstyle() == "steps-pre"
    # inf (identical images) counts above every x; ties make one point
    xs, ys = plots.cumulative_score_distribution([30.0, np.inf, 20.0, 30.0])
    assert xs.tolist() == [20.0, 30.0] and ys.tolist() == [1.0, 0.75]


def test_metric_vs_scale(store):
    fig = plots.plot_metric_vs_scale(store, "lfw-10fold")
    (ax,) = fig.axes
    lines = lines_by_label(fig)
    assert list(ax.get_xticks()) == [4, 8] and [t.get_text() for t in ax.get_xticklabels()] == ["×4", "×8"]
    assert lines["alpha"].get_xdata().tolist() == [4, 8] and lines["alpha"].get_ydata().tolist() == [0.95, 0.85]
    assert lines["beta"].get_xdata().tolist() == [8]
    assert list(lines["HR (no degradation)"].get_ydata()) == [0.99, 0.99]  # a horizontal line
    assert len(ax.containers) == 3  # alpha, beta, bicubic with +- accuracy_std error bars
    # PSNR: no fold std in the protocol, no error bars; hr (inf) has no line
    psnr = plots.plot_metric_vs_scale(store, "lfw-10fold", "psnr")
    assert not psnr.axes[0].containers and "HR (no degradation)" not in lines_by_label(psnr)


def test_colours_are_stable_per_model(store):
    roc = lines_by_label(plots.plot_roc(store, "lfw-10fold", scale=8))
    csd = lines_by_label(plots.plot_csd(store, "lfw-10fold", scale=8))
    scale = lines_by_label(plots.plot_metric_vs_scale(store, "lfw-10fold"))
    for label in ("alpha", "beta", "Bicubic (no SR)"):
        assert roc[label].get_color() == csd[label].get_color() == scale[label].get_color()
        assert roc[label].get_linestyle() == csd[label].get_linestyle()
    assert roc["HR (no degradation)"].get_color() == "black"
    assert roc["Bicubic (no SR)"].get_color() == "#7f7f7f"
    assert roc["alpha"].get_color() in plots.PALETTE
    assert plots.model_style("alpha") == plots.model_style("alpha")  # no per-process salt (hash())
    baselines = [plots.model_style(m) for m in plots.FIXED_SLOTS]
    assert len({(s["color"], s["linestyle"]) for s in baselines}) == len(baselines)


def test_no_runs_and_ambiguous_selections(store, tmp_path):
    with pytest.raises(FhbenchError, match=r"no runs of protocol nope in .*r\.sqlite \(protocols with runs: "
                                           r"lfw-10fold, toy-blufr, toy-ident\)"):
        plots.plot_roc(store, "nope", scale=8)
    with pytest.raises(FhbenchError, match="lfw-10fold are at scales x4, x8; a figure shows one: pass --scale"):
        plots.plot_roc(store, "lfw-10fold")
    with pytest.raises(FhbenchError, match="at scale 2 .stored scales: x4, x8"):
        plots.plot_roc(store, "lfw-10fold", scale=2)
    with pytest.raises(FhbenchError, match=r"no run of model\(s\) gamma on lfw-10fold"):
        plots.plot_roc(store, "lfw-10fold", scale=8, models=["alpha", "gamma"])
    store.save("alpha", "lfw-10fold", 8, "facenet", lfw_metrics(0.8, 25), {}, {})
    with pytest.raises(FhbenchError, match="evaluators facenet, sface; a figure shows one: pass --evaluator"):
        plots.plot_roc(store, "lfw-10fold", scale=8)
    with pytest.raises(FhbenchError, match="suffix must be one of .pdf, .png, .svg"):
        plots.save_figure(plots.plot_roc(store, "lfw-10fold", 8, "sface"), tmp_path / "fig.jpg")


def test_missing_arrays_say_which_protocol_is_needed(store):
    with pytest.raises(FhbenchError, match="^protocol lfw-10fold stores no CMC .*; CMC plots need an "
                                           "identification protocol such as celeba-knn$"):
        plots.plot_cmc(store, "lfw-10fold", scale=8)
    with pytest.raises(FhbenchError, match="protocol toy-ident stores no pair scores .*lfw-10fold"):
        plots.plot_roc(store, "toy-ident")
    for kind in ("vr", "dir"):
        with pytest.raises(FhbenchError, match=f"stores no BLUFR {kind.upper()}-FAR curve .*such as lfw-blufr"):
            plots.plot_blufr(store, "lfw-10fold", kind, scale=8)
    store.save("gamma", "toy-ident", 8, "sface", {"rank1": 0.5}, {}, {"psnr": np.ones(3)})  # no cmc
    with pytest.raises(FhbenchError, match="run.s. of gamma on toy-ident store no cmc: .*--models"):
        plots.plot_cmc(store, "toy-ident")
    with pytest.raises(FhbenchError, match="no run of lfw-10fold stores metric 'rank1'"):
        plots.plot_metric_vs_scale(store, "lfw-10fold", "rank1")


def test_hr_only_protocol(tmp_path, toy_protocols):
    st = ResultStore(tmp_path / "r.sqlite")
    st.save("hr", "toy-ident", "hr", "sface", {"rank1": 1.0}, {}, {"psnr": np.full(3, np.inf), "ssim": np.ones(3)})
    with pytest.raises(FhbenchError, match="hr run alone has no score distribution"):
        plots.plot_csd(st, "toy-ident")
    with pytest.raises(FhbenchError, match="only the hr run of toy-ident is stored"):
        plots.plot_metric_vs_scale(st, "toy-ident")


def test_cli_plot(store, tmp_path):
    out = tmp_path / "roc.svg"
    res = CliRunner().invoke(main, ["plot", "roc", "--protocol", "lfw-10fold", "--scale", "8", "--log-far",
                                    "--models", "alpha,beta", "--no-title", "--store", str(store.path), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert res.output == f"wrote {out}\n" and out.stat().st_size > 1000
    res = CliRunner().invoke(main, ["plot", "cmc", "--protocol", "lfw-10fold", "--scale", "8",
                                    "--store", str(store.path), "-o", str(tmp_path / "cmc.pdf")])
    assert res.exit_code == 2 and "stores no CMC" in res.output
    assert not (tmp_path / "cmc.pdf").exists()


def test_sample_grid(tiny_lfw, tmp_path):
    keys = ["Colin_Powell/Colin_Powell_0001.jpg", "Hugo_Chavez/Hugo_Chavez_0003.jpg"]
    grid = render_samples("lfw-10fold", {"bicubic": "bicubic", "nearest": "nearest"}, keys, scale=8,
                          data_root=tiny_lfw, cache_dir="")
    assert grid.columns == ["LR (×8)", "bicubic", "nearest", "HR"] and grid.keys == keys
    assert grid.images.shape == (2, 4, 3, 112, 96)
    for i, key in enumerate(keys):  # HR column: the files, read here with OpenCV
        bgr = cv2.imread(str(tiny_lfw / "aligned-112x96" / key))
        assert np.allclose(grid.images[i, 3], bgr[:, :, ::-1].transpose(2, 0, 1) / 255.0, atol=1e-6)
    # LR column: 14x12 pixels, each replicated 8x8; nearest-neighbour SR is the same picture.
    lr_blocks = grid.images[:, 0].reshape(2, 3, 14, 8, 12, 8)
    assert np.all(lr_blocks == lr_blocks[:, :, :, :1, :, :1])
    assert np.array_equal(grid.images[:, 0], grid.images[:, 2])
    assert not np.array_equal(grid.images[:, 1], grid.images[:, 2])
    fig = plots.plot_sample_grid(grid)
    assert [ax.get_title() for ax in fig.axes[:4]] == grid.columns and len(fig.axes) == 8
    path = plots.save_figure(fig, tmp_path / "grid.png")
    with Image.open(path) as im:
        assert im.size[0] == 1050
    with pytest.raises(FhbenchError, match="image index 99 is outside the protocol's 24 faces"):
        render_samples("lfw-10fold", {"bicubic": "bicubic"}, [99], 8, tiny_lfw, cache_dir="")
    with pytest.raises(FhbenchError, match="'Nobody/Nobody_0001.jpg' is not in the protocol's face list"):
        render_samples("lfw-10fold", {"bicubic": "bicubic"}, ["Nobody/Nobody_0001.jpg"], 8, tiny_lfw, cache_dir="")
    skipped = render_samples("lfw-10fold", {"bicubic": "bicubic", "broken": "no_such_model"}, [0], 8, tiny_lfw,
                             cache_dir="", skip_unavailable=True)
    assert skipped.columns == ["LR (×8)", "bicubic", "HR"] and "unknown model" in skipped.skipped["broken"]


class _Upsample8x(torch.nn.Module):
    def forward(self, x):
        return torch.nn.functional.interpolate(x, scale_factor=8.0, mode="nearest")


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")  # TorchScript is deprecated, still supported
def test_sample_grid_refuses_weights_other_than_the_stored_runs(tiny_lfw, tmp_path):
    path = tmp_path / "up8.pt"
    torch.jit.save(torch.jit.script(_Upsample8x()), str(path))
    scored = hashlib.sha256(path.read_bytes()).hexdigest()
    same = render_samples("lfw-10fold", {"up8": ModelSpec(str(path), weights_sha256=scored)}, [0], 8, tiny_lfw,
                          cache_dir="")
    assert same.columns == ["LR (×8)", "up8", "HR"]
    other = ModelSpec(str(path), weights_sha256="0" * 64)  # the file changed since its run was stored
    with pytest.raises(FhbenchError, match=r"up8: the weights loaded .* are not those its stored run was scored "
                                           r"with \(SHA256 " + scored[:12] + r"\.\.\., the run's 000000000000"):
        render_samples("lfw-10fold", {"up8": other}, [0], 8, tiny_lfw, cache_dir="")
    skipped = render_samples("lfw-10fold", {"up8": other}, [0], 8, tiny_lfw, cache_dir="", skip_unavailable=True)
    assert skipped.columns == ["LR (×8)", "HR"] and "--weights up8=FILE" in skipped.skipped["up8"]
    # stored runs carry their weights' hash into the grid
    st = ResultStore(tmp_path / "r.sqlite")
    st.save("up8-run", "lfw-10fold", 8, "sface", {"accuracy": 0.5},
            {"model": {"spec": str(path), "weights_sha256": scored}}, {})
    assert stored_models(st, "lfw-10fold", 8) == {"up8-run": ModelSpec(str(path), weights_sha256=scored)}


def first_style_collision():
    """Two names whose own (hashed) styles are equal, found by search."""
    seen = {}
    for i in range(1000):
        name = f"model-{i}"
        style = tuple(plots.model_style(name).values())
        if style in seen:
            return seen[style], name
        seen[style] = name
    raise AssertionError("no collision among 1000 names")


def test_models_of_one_store_never_share_a_style(store):
    a, b = first_style_collision()
    assert plots.model_style(a) == plots.model_style(b)
    rng = np.random.default_rng(5)
    for name in (a, b):
        store.save(name, "lfw-10fold", 8, "sface", lfw_metrics(0.8, 25.0), {},
                   {**pair_arrays(rng, 1.0), **image_arrays(rng, 25)})
    roc = lines_by_label(plots.plot_roc(store, "lfw-10fold", scale=8))
    assert (roc[a].get_color(), roc[a].get_linestyle()) != (roc[b].get_color(), roc[b].get_linestyle())
    # the same style in every figure, whichever runs it shows
    csd = lines_by_label(plots.plot_csd(store, "lfw-10fold", scale=8))
    alone = lines_by_label(plots.plot_roc(store, "lfw-10fold", scale=8, models=[b]))
    for lines in (csd, alone):
        assert lines[b].get_color() == roc[b].get_color() and lines[b].get_linestyle() == roc[b].get_linestyle()
    # user models never take a baseline's slot
    baseline = {tuple(plots.model_style(m).values()) for m in plots.FIXED_SLOTS}
    assert all(tuple(plots.model_style(f"user-{i}").values()) not in baseline for i in range(200))


def test_styles_are_the_same_in_every_process():
    import json
    import os
    import subprocess
    import sys

    code = ("import json; from benchmark.reporting.plots import model_style, model_styles; "
            "print(json.dumps([model_style('alpha'), model_styles(['alpha', 'model-0', 'model-2'])]))")
    outputs = set()
    for seed in ("1", "2"):  # str hashing is salted per process; SHA-1 is not
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PYTHONHASHSEED": seed})
        assert done.returncode == 0, done.stderr
        outputs.add(done.stdout)
    (out,) = outputs
    assert json.loads(out)[0] == plots.model_style("alpha")


def test_sample_grid_sizes_and_formats(tmp_path):
    from benchmark.reporting.samples import SampleGrid

    rng = np.random.default_rng(0)
    for n_models, width in ((3, plots.COLUMN_WIDTH), (4, plots.TEXT_WIDTH)):  # 5 columns fit one column, 6 not
        columns = ["LR (×8)"] + [f"m{i}" for i in range(n_models)] + ["HR"]
        grid = SampleGrid("lfw-10fold", 8, ["a", "b"], columns, rng.random((2, len(columns), 3, 112, 96)))
        fig = plots.plot_sample_grid(grid)
        for suffix in (".png", ".pdf", ".svg"):
            path = plots.save_figure(fig, tmp_path / f"grid{suffix}")
            assert path.stat().st_size > 1000
        with Image.open(tmp_path / "grid.png") as im:
            assert im.size[0] == round(width * plots.PNG_DPI)
        assert f"/MediaBox [ 0 0 {width * 72:g} ".encode() in (tmp_path / "grid.pdf").read_bytes()


def test_nan_metric_is_an_error_not_an_empty_figure(tmp_path, toy_protocols):
    st = ResultStore(tmp_path / "r.sqlite")
    for model, scale in (("alpha", 4), ("alpha", 8)):
        st.save(model, "toy-ident", scale, "sface", {"rank1": float("nan")}, {}, {})
    with pytest.raises(FhbenchError, match="^rank1 is nan or inf in every SR run of toy-ident with sface: "
                                           "nothing to plot$"):
        plots.plot_metric_vs_scale(st, "toy-ident")


def test_cli_bad_input_is_one_line(store, tmp_path):
    def run(*args):
        res = CliRunner().invoke(main, [*args, "--store", str(store.path)])
        assert res.exit_code == 2 and res.output.count("\n") == 1 and res.output.startswith("fhbench: error: ")
        return res.output

    assert re.search(r"no runs in .*r\.sqlite for protocol=celeba-knn", run("leaderboard", "--protocol", "celeba-knn"))
    assert "no runs of protocol celeba-knn" in run("plot", "cmc", "--protocol", "celeba-knn", "-o",
                                                   str(tmp_path / "x.pdf"))
    assert not (tmp_path / "x.pdf").exists()
    store.save("gamma", "lfw-10fold", 4, "sface", lfw_metrics(0.8, 25), {}, {})
    assert "cannot compare runs of different scales: gamma at x4, beta at x8; pass --scale" in \
        run("compare", "gamma", "beta", "--protocol", "lfw-10fold")
    store.save("alpha", "lfw-10fold", 8, "facenet", lfw_metrics(0.8, 25), {}, {})
    assert "evaluators facenet, sface; a figure shows one: pass --evaluator" in \
        run("plot", "roc", "--protocol", "lfw-10fold", "--scale", "8", "-o", str(tmp_path / "y.png"))
