"""Protocols with fixed LR sizes (``lr_sizes``: one run covers every size, stored at level ``sizes``,
metrics and arrays named ``<name>@<level>``): figures, comparisons, sample grids, the
leaderboard and the report at one level, metric vs LR size, and the one-line errors.

The toy protocol lists its sizes out of size order (16x14, 7x6, 14x12) so that "protocol
order" and "sorted" cannot be confused; each level's arrays differ, so reading the wrong
level shows."""
import base64
import io
import re

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from benchmark.reporting import plots
from benchmark.cli import main
from benchmark.reporting.compare import compare_models
from benchmark.errors import FhbenchError
from benchmark.reporting.leaderboard import build_tables, format_tables
from benchmark.reporting.report import build_report
from benchmark.reporting.samples import ModelSpec, render_samples
from benchmark.engine.store import ResultStore
from conftest import LFW_ALIGNED, lines_by_label

LEVELS = ["16x14", "7x6", "14x12"]
TOY = {"name": "toy-sizes", "summary": "synthetic fixed-LR-size identification", "dataset": "lfw",
       "task": "gallery-probe", "degradation": "bicubic", "lr_sizes": [[16, 14], [7, 6], [14, 12]],
       "options": {"selection": "people", "selection_args": {"min_images": 3}, "repeats": 2, "max_rank": 5},
       "metrics": [m for lv in LEVELS for m in (f"rank1@{lv}", f"rank1@{lv}_std")],
       "primary_metric": "rank1@14x12"}
# per model and level: probe ranks (2 repeats x 5 probes) and per-image PSNR
PROBE_RANKS = {
    "bicubic": {"16x14": [[1, 2, 2, 1, 3], [1, 2, 2, 1, 1]], "7x6": [[5, 5, 5, 5, 1], [5, 5, 5, 5, 5]],
                "14x12": [[1, 2, 1, 1, 3], [1, 2, 2, 1, 1]]},
    "alpha": {"16x14": [[1, 1, 2, 1, 3], [1, 2, 1, 1, 1]], "7x6": [[5, 5, 2, 5, 1], [5, 1, 5, 5, 5]],
              "14x12": [[1, 1, 2, 1, 1], [1, 2, 1, 1, 1]]},
    "hr": {lv: [[1, 1, 1, 1, 2], [1, 1, 1, 1, 1]] for lv in LEVELS},
}
PSNR = {"bicubic": {"16x14": [24.0, 25.0, 23.0, 26.0, 22.0], "7x6": [18.0, 19.0, 17.5, 20.0, 16.0],
                    "14x12": [23.0, 24.0, 22.0, 25.0, 21.0]},
        "alpha": {"16x14": [26.0, 27.5, 25.0, 28.0, 24.0], "7x6": [19.0, 20.0, 18.0, 21.5, 17.0],
                  "14x12": [25.0, 26.0, 24.5, 27.0, 23.0]}}


def identity_sr(x):
    """A user model given as ``test_levels:identity_sr``: returns its input."""
    return x


def broken_sr(x):
    raise RuntimeError("out of memory, say")


def cmc_of(ranks, max_rank=5):
    """CMC per repeat, counted by hand: fraction of probes with rank <= r."""
    ranks = np.asarray(ranks)
    return np.array([[np.mean(row <= r) for r in range(1, max_rank + 1)] for row in ranks])


def rank1_mean_std(ranks):
    per_repeat = [np.mean(np.asarray(row) == 1) for row in ranks]
    return float(np.mean(per_repeat)), float(np.std(per_repeat))


@pytest.fixture
def toy_protocol(tmp_path, monkeypatch):
    folder = tmp_path / "protocols"
    folder.mkdir()
    (folder / "toy-sizes.yaml").write_text(yaml.safe_dump(TOY))
    monkeypatch.setenv("FHBENCH_PROTOCOLS", str(folder))


def save_run(st, model, level, evaluator="sface", data_of=None):
    """A run of ``model`` with the hand-made arrays of ``data_of`` (default: its own)."""
    metrics, arrays = {}, {}
    data_of = data_of or model
    for lv in LEVELS:
        ranks = PROBE_RANKS[data_of][lv]
        metrics[f"rank1@{lv}"], metrics[f"rank1@{lv}_std"] = rank1_mean_std(ranks)
        arrays[f"probe_rank@{lv}"] = np.array(ranks)
        arrays[f"cmc@{lv}"] = cmc_of(ranks)
        psnr = np.full(5, np.inf) if data_of == "hr" else np.array(PSNR[data_of][lv])
        arrays[f"psnr@{lv}"], arrays[f"ssim@{lv}"] = psnr, np.linspace(0.5, 0.9, 5)
        metrics[f"psnr@{lv}"] = float(np.mean(psnr))
    st.save(model, "toy-sizes", level, evaluator, metrics, {"model": {"spec": model}}, arrays)


@pytest.fixture
def store(tmp_path, toy_protocol):
    st = ResultStore(tmp_path / "r.sqlite")
    save_run(st, "hr", "hr")
    save_run(st, "bicubic", "sizes")
    save_run(st, "alpha", "sizes")
    return st


# --- the level: required, checked, refused where it makes no sense ----------------------

def test_level_is_required_and_checked(store, tmp_path):
    with pytest.raises(FhbenchError, match=r"^protocol toy-sizes scores every LR size in one run; pass --level, "
                                           r"one of 16x14, 7x6, 14x12$"):
        plots.plot_cmc(store, "toy-sizes")
    with pytest.raises(FhbenchError, match=r"^protocol toy-sizes has no level '10x10' \(levels: 16x14, 7x6, 14x12\)$"):
        plots.plot_cmc(store, "toy-sizes", level="10x10")
    with pytest.raises(FhbenchError, match="has no scales: one run covers its LR sizes .*pass --level instead of "
                                           "--scale 8"):
        plots.plot_cmc(store, "toy-sizes", scale=8, level="16x14")
    store.save("alpha", "lfw-10fold", 8, "sface", {"accuracy": 0.9}, {}, {})
    with pytest.raises(FhbenchError, match=r"^protocol lfw-10fold has scales \(2, 4, 8\), not LR-size levels: "
                                           r"pass --scale instead of --level 16x14$"):
        plots.plot_roc(store, "lfw-10fold", level="16x14")
    with pytest.raises(FhbenchError, match="plot scale draws every LR size of toy-sizes; leave out"):
        plots.draw("scale", store, "toy-sizes", level="16x14")
    out = tmp_path / "cmc.pdf"
    res = CliRunner().invoke(main, ["plot", "cmc", "--protocol", "toy-sizes", "--store", str(store.path), "-o", str(out)])
    assert res.exit_code == 2 and not out.exists()
    assert res.output == ("fhbench: error: protocol toy-sizes scores every LR size in one run; pass --level, "
                          "one of 16x14, 7x6, 14x12\n")


# --- figures at one level --------------------------------------------------------------

def test_cmc_at_a_level_reads_that_levels_arrays(store):
    for level in ("16x14", "7x6"):
        fig = plots.plot_cmc(store, "toy-sizes", level=level)
        lines = lines_by_label(fig)
        assert list(lines) == ["HR (no degradation)", "alpha", "Bicubic (no SR)"]
        for model, label in (("alpha", "alpha"), ("bicubic", "Bicubic (no SR)")):
            expected = cmc_of(PROBE_RANKS[model][level]).mean(axis=0)
            assert np.allclose(lines[label].get_ydata(), expected)
        assert fig.axes[0].get_title() == f"CMC: toy-sizes, LR {level.replace('x', '×')}, sface"
    # 7x6: alpha gets 2 of 10 probes at rank 1 (hand count), not 16x14's 7
    assert lines_by_label(plots.plot_cmc(store, "toy-sizes", level="7×6"))["alpha"].get_ydata()[0] == 0.2


def test_csd_at_a_level(store):
    lines = lines_by_label(plots.plot_csd(store, "toy-sizes", "psnr", level="7x6"))
    assert "HR (no degradation)" not in lines
    assert lines["alpha"].get_xdata().tolist() == sorted(PSNR["alpha"]["7x6"])
    assert lines["alpha"].get_ydata().tolist() == [1.0, 0.8, 0.6, 0.4, 0.2]


def test_missing_arrays_name_the_level(store):
    with pytest.raises(FhbenchError, match=r"^protocol toy-sizes stores no pair scores \(arrays pair_scores@16x14, "
                                           r"pair_is_same@16x14\); ROC plots need"):
        plots.plot_roc(store, "toy-sizes", level="16x14")
    with pytest.raises(FhbenchError, match="stores no BLUFR VR-FAR curve .arrays vr_curve_far@14x12"):
        plots.plot_blufr(store, "toy-sizes", "vr", level="14x12")


def test_metric_vs_lr_size(store):
    fig = plots.draw("scale", store, "toy-sizes")  # `fhbench plot scale` on an lr_sizes protocol
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["16×14", "7×6", "14×12"]  # protocol order
    assert ax.get_xlabel() == "LR size (h × w)" and ax.get_title() == "Rank-1 vs LR size: toy-sizes, sface"
    lines = lines_by_label(fig)
    # alpha, by hand: 16x14 (3/5 + 4/5)/2, 7x6 (1/5 + 1/5)/2, 14x12 (4/5 + 4/5)/2
    assert lines["alpha"].get_xdata().tolist() == [0, 1, 2]
    assert np.allclose(lines["alpha"].get_ydata(), [0.7, 0.2, 0.8])
    assert np.allclose(lines["HR (no degradation)"].get_ydata(), [0.9, 0.9, 0.9])
    # error bars: +- the std over the 2 repeats (alpha 16x14: |3/5 - 4/5| / 2 = 0.1)
    (container,) = [c for c in ax.containers if c.get_label() == "alpha"]
    (bars,) = container[2]
    heights = [seg[1][1] - seg[0][1] for seg in bars.get_segments()]
    assert np.allclose(heights, [0.2, 0.0, 0.0])
    psnr = lines_by_label(plots.plot_metric_vs_scale(store, "toy-sizes", "psnr@7x6"))  # a level's name: same
    assert "HR (no degradation)" not in psnr  # inf at every size
    assert np.allclose(psnr["alpha"].get_ydata(), [np.mean(PSNR["alpha"][lv]) for lv in LEVELS])
    with pytest.raises(FhbenchError, match="no run of toy-sizes with sface stores 'rank5' at any LR size "
                                           r"\(16x14, 7x6, 14x12\); metrics stored: psnr, rank1, rank1_std"):
        plots.plot_metric_vs_level(store, "toy-sizes", "rank5")


def test_metric_vs_lr_size_with_a_metric_at_some_sizes_only(tmp_path, monkeypatch):
    monkeypatch.delenv("FHBENCH_PROTOCOLS", raising=False)
    st = ResultStore(tmp_path / "r.sqlite")
    # ar-cmc lists rank5 at 16x16 only, the third of its sizes
    st.save("alpha", "ar-cmc", "sizes", "sface", {"rank1@11x8": 0.1, "rank1@16x16": 0.5, "rank5@16x16": 0.75}, {}, {})
    lines = lines_by_label(plots.plot_metric_vs_scale(st, "ar-cmc", "rank5"))
    assert lines["alpha"].get_xdata().tolist() == [2] and lines["alpha"].get_ydata().tolist() == [0.75]
    rank1 = lines_by_label(plots.plot_metric_vs_scale(st, "ar-cmc"))  # the primary, rank1@16x16: rank1
    assert rank1["alpha"].get_xdata().tolist() == [0, 2]
    only_hr = ResultStore(tmp_path / "hr.sqlite")
    only_hr.save("hr", "ar-cmc", "hr", "sface", {"rank1@11x8": 1.0}, {}, {})
    with pytest.raises(FhbenchError, match="only the hr run of ar-cmc is stored; metric vs LR size needs an SR run"):
        plots.plot_metric_vs_scale(only_hr, "ar-cmc")


def test_cli_plots_at_a_level(store, tmp_path):
    for kind, extra, suffix in (("cmc", ["--level", "16x14"], ".png"),
                                ("csd", ["--level", "14x12", "--metric", "ssim"], ".pdf"), ("scale", [], ".svg")):
        out = tmp_path / f"{kind}{suffix}"
        res = CliRunner().invoke(main, ["plot", kind, "--protocol", "toy-sizes", *extra, "--store", str(store.path),
                                        "-o", str(out)])
        assert res.exit_code == 0, res.output
    with Image.open(tmp_path / "cmc.png") as im:  # one column of a two-column paper at 300 dpi
        assert im.size == (1050, 780)
    assert b"/MediaBox [ 0 0 252 187.2 ]" in (tmp_path / "csd.pdf").read_bytes()
    svg = (tmp_path / "scale.svg").read_text()
    assert 'width="252pt" height="187.2pt"' in svg and "16×14" in svg  # tick labels stay text


# --- paired comparisons at one level ---------------------------------------------------

def test_compare_at_a_level(store):
    c = compare_models(store, "toy-sizes", "bicubic", "alpha", level="16x14", n_resamples=200)
    assert c.level == "16x14" and c.mcnemar is None
    by_metric = {iv.metric: iv for iv in c.intervals}
    # rank-1 of the 16x14 probe ranks, by hand: bicubic (2/5 + 3/5)/2, alpha (3/5 + 4/5)/2
    assert by_metric["rank1"].value_a == pytest.approx(0.5) and by_metric["rank1"].value_b == pytest.approx(0.7)
    assert by_metric["rank1"].difference == pytest.approx(0.2)
    assert by_metric["rank1"].unit == "probes within repeats"
    assert by_metric["psnr"].value_a == pytest.approx(24.0) and by_metric["psnr"].value_b == pytest.approx(26.1)
    other = compare_models(store, "toy-sizes", "bicubic", "alpha", level="7x6", n_resamples=200)
    assert {iv.metric: iv.value_b for iv in other.intervals}["rank1"] == pytest.approx(0.2)
    with pytest.raises(FhbenchError, match="pass --level, one of 16x14, 7x6, 14x12"):
        compare_models(store, "toy-sizes", "bicubic", "alpha")
    with pytest.raises(FhbenchError, match="has no level '8x8'"):
        compare_models(store, "toy-sizes", "bicubic", "alpha", level="8x8")
    res = CliRunner().invoke(main, ["compare", "bicubic", "alpha", "--protocol", "toy-sizes", "--level", "16x14",
                                    "--resamples", "200", "--store", str(store.path)])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("toy-sizes, LR 16×14, evaluator sface: A = bicubic, B = alpha")
    assert re.search(r"^rank1 +50\.00% +70\.00% +\+20\.00 ", res.output, re.M)


def test_compare_refuses_runs_of_different_evaluators(store):
    save_run(store, "gamma", "sizes", evaluator="facenet", data_of="alpha")
    with pytest.raises(FhbenchError, match="^cannot compare runs of different evaluators: bicubic with sface, "
                                           "gamma with facenet; pass --evaluator$"):
        compare_models(store, "toy-sizes", "bicubic", "gamma", level="16x14")


# --- sample grids at one level ---------------------------------------------------------

@pytest.mark.skipif(not LFW_ALIGNED.is_dir(), reason="needs ../shared/data/lfw: the PIL oracle's tolerance holds "
                    "for real faces, not for tiny_lfw's synthetic noise faces")
def test_samples_at_a_level(store, tiny_lfw, tmp_path):
    keys = ["Colin_Powell/Colin_Powell_0001.jpg", "Hugo_Chavez/Hugo_Chavez_0003.jpg"]
    models = {"bicubic": "bicubic", "up": ModelSpec("test_levels:identity_sr", upsampled_input=True, clamp=True),
              "raw": "test_levels:identity_sr", "broken": "test_levels:broken_sr"}
    grid = render_samples("toy-sizes", models, keys, data_root=tiny_lfw, cache_dir="", skip_unavailable=True,
                          level="16x14")
    assert grid.columns == ["LR (16×14)", "bicubic", "up", "HR"] and grid.level == "16x14" and grid.scale is None
    # fed the 16x14 LR itself, the identity returns 16x14 faces: refused, named
    assert "raw" in grid.skipped and "returned shape (2, 3, 16, 14)" in grid.skipped["raw"]
    # any failure: left out, named as a run names it
    assert grid.skipped["broken"].startswith("model test_levels:broken_sr raised RuntimeError on images ")
    assert grid.skipped["broken"].endswith(": out of memory, say")
    # the model that wants upsampled input gets the LR bicubic-upsampled to 112x96: the bicubic baseline
    assert np.allclose(grid.images[:, 2], grid.images[:, 1], atol=1e-6)
    for i, key in enumerate(keys):
        with Image.open(tiny_lfw / "aligned-112x96" / key) as im:
            hr_pil = im.convert("RGB")
        assert np.allclose(grid.images[i, 3], np.asarray(hr_pil).transpose(2, 0, 1) / 255.0, atol=1e-6)
        # LR column: 16x14 pixels, each repeated over its block; oracle: PIL's antialiased bicubic
        # (same kernel, a = -0.5; borders differ: compare the interior, to one 8-bit level)
        lr = grid.images[i, 0][:, ::7, :][:, :, np.arange(14) * 96 // 14 + 3]
        pil_lr = np.asarray(hr_pil.resize((14, 16), Image.BICUBIC)).transpose(2, 0, 1) / 255.0
        assert np.abs(lr - pil_lr)[:, 2:-2, 2:-2].max() <= 1.01 / 255
        # bicubic column: the LR upsampled to 112x96 (PIL upsampling of the LR as oracle)
        lr8 = Image.fromarray(np.round(lr.transpose(1, 2, 0) * 255).astype(np.uint8))
        pil_up = np.asarray(lr8.resize((96, 112), Image.BICUBIC)).transpose(2, 0, 1) / 255.0
        assert np.abs(grid.images[i, 1] - pil_up)[:, 16:-16, 16:-16].max() <= 1.5 / 255
    with pytest.raises(FhbenchError, match="pass --level, one of 16x14, 7x6, 14x12"):
        render_samples("toy-sizes", {"bicubic": "bicubic"}, keys, data_root=tiny_lfw, cache_dir="")
    out = tmp_path / "grid.svg"
    res = CliRunner().invoke(main, ["plot", "samples", "--protocol", "toy-sizes", "--level", "7x6", "--models",
                                    "bicubic", "--images", "0", "--data-root", str(tiny_lfw), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "LR (7×6)" in out.read_text()


# --- leaderboard and report ------------------------------------------------------------

def test_leaderboard_of_fixed_lr_sizes(store, tmp_path):
    (t,) = build_tables(store, protocol="toy-sizes")
    assert t.level == "sizes" and [r["model"] for r in t.rows] == ["hr (no degradation)", "alpha", "bicubic (no SR)"]
    md = format_tables([t], "md")
    assert md.startswith("### toy-sizes, fixed LR sizes, evaluator sface\n")
    assert "| Model | Rank-1 (%) @16x14 | Rank-1 (%) @7x6 | Rank-1 (%) @14x12 |" in md
    # alpha, primary 14x12: 80 % +- 0; 16x14: 70 +- 10 (repeats 60 % and 80 %)
    assert "| alpha | **70.00 ± 10.00** | **20.00 ± 0.00** | **80.00 ± 0.00** |" in md
    lone = ResultStore(tmp_path / "lone.sqlite")
    save_run(lone, "alpha", "sizes")
    note = format_tables(build_tables(lone, protocol="toy-sizes"), "md")
    # a run over fixed LR sizes takes no --scale
    assert ("Missing reference rows: `fhbench run --model hr --protocol toy-sizes --evaluator sface`; "
            "`fhbench run --model bicubic --protocol toy-sizes --evaluator sface`") in note


def test_report_draws_every_level(store, tiny_lfw, tmp_path):
    out = build_report(store, tmp_path / "report.html", data_root=tiny_lfw, images=[0])
    text = out.read_text()
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", text)
    per_level = [f"{c}, LR {lv.replace('x', '×')}, sface" for lv in LEVELS
                 for c in ("CMC", "CSD of PSNR", "CSD of SSIM")]
    assert captions[:11] == per_level + ["rank1 vs LR size, sface", "psnr vs LR size, sface"]
    assert captions[11].startswith("LR | bicubic | HR: ")  # alpha's spec cannot be rebuilt here
    assert "alpha not shown: unknown model &#x27;alpha&#x27;" in text
    assert "<h3>Samples (LR 14×12)</h3>" in text  # the primary metric's size
    assert "ROC (log FAR), LR 7×6, sface: protocol toy-sizes stores no pair scores" in text
    srcs = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([^"]+)"', text)
    assert len(srcs) == 12
    with Image.open(io.BytesIO(base64.b64decode(srcs[-1]))) as im:  # the sample grid: LR | bicubic | HR
        assert im.size[0] == 525
