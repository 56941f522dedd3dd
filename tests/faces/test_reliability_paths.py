"""Issue 11, paths, names, lists and labels: ``leaderboard --write`` stays inside its folder
and writes strict JSON; list entries and protocol options never reach files outside the
dataset; protocols name only marked selections with fitting arguments; a wrong pairs.txt
fails before any image is read; run names with '$' or a leading '_' draw as typed."""
import html
import json
import math
import re
import shutil
import sqlite3
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import yaml

from benchmark.reporting import plots
from benchmark.engine import pipeline, runner, strict_json
from benchmark.faces import faceset as faceset_mod
from benchmark.faces.blufr import load_blufr_config
from benchmark.datasets.celeba import CelebA
from benchmark.faces.faceset import FaceSet
from benchmark.datasets.lfw import LFW
from benchmark.faces.roots import inside_root
from benchmark.datasets.scface import ScfaceSplit, _checked
from benchmark.faces.selections import selection, selection_names
from benchmark.errors import ConfigError, DataError, FhbenchError
from benchmark.reporting.leaderboard import build_tables, write_results
from benchmark.engine.protocols import PROTOCOL_DIRS, load_protocol, parse_protocol
from benchmark.registry import DATASETS, TASKS, Entry
from benchmark.reporting.report import build_report, render_report
from benchmark.reporting.samples import SampleGrid
from benchmark.engine.store import ResultStore
from benchmark.tasks.pairs_10fold import check_folds
from conftest import TINY_PAIRS
from test_blufr_config import valid_contents, write as write_mat

P = "lfw-10fold"
SAFE_PART = re.compile(r"^[A-Za-z0-9_+@-][A-Za-z0-9._+@-]*$")


def one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text and text
    return text


def lb_metrics(acc, psnr):
    return {"accuracy": acc, "accuracy_std": 0.01, "auc": acc, "eer": 1 - acc, "psnr": psnr, "psnr_std": 1.0,
            "ssim": 0.7, "ssim_std": 0.1, "fr_loss": 1.0, "fr_loss_std": 0.1}


def save_as(store, model, scale, evaluator="sface", metrics=None, manifest=None, arrays=None, protocol=P):
    """Save a row, then rename it by SQL: a store written before run names were checked
    (the store itself may refuse such names now)."""
    store.save("placeholder-row", protocol, scale, "placeholder-ev", metrics or lb_metrics(0.9, 25.0),
               manifest or {}, arrays)
    with sqlite3.connect(store.path) as con:
        con.execute("UPDATE runs SET model = ?, evaluator = ? WHERE model = 'placeholder-row'", (model, evaluator))


@pytest.fixture
def shipped(monkeypatch):
    monkeypatch.delenv("FHBENCH_PROTOCOLS", raising=False)


@pytest.fixture
def board(tmp_path, shipped):
    st = ResultStore(tmp_path / "store" / "r.sqlite")
    st.save("hr", P, "hr", "sface", lb_metrics(0.99, math.inf), {"model": {"spec": "hr"}, "timing": {"rate": math.nan}})
    st.save("bicubic", P, 8, "sface", lb_metrics(0.9, 24.0), {})
    return st


# --- leaderboard --write ------------------------------------------------------------------

def test_hostile_run_names_stay_inside_the_write_folder(board, tmp_path):
    hostile = ["../../x", "../../../escape", "..", ".hidden", "a/b"]
    for k, name in enumerate(hostile):
        save_as(board, name, 8, metrics=lb_metrics(0.5 + k / 100, 25.0))
    save_as(board, "m", 8, evaluator="../../../ev")
    out = tmp_path / "site" / "results"
    written = write_results(build_tables(board), out, board)
    files = {p for p in tmp_path.rglob("*") if p.is_file()}
    assert files - set(written) == {board.path}  # nothing beside the folder, no stray temporary file
    for path in written:
        assert all(SAFE_PART.match(part) for part in path.relative_to(out).parts), path
    bodies = [json.loads(p.read_text()) for p in written if p.suffix == ".json"]
    assert sorted(b["model"] for b in bodies) == sorted(["hr", "bicubic", "m", *hostile])  # one file each


def test_a_write_folder_linked_elsewhere_is_refused_before_writing(board, tmp_path):
    out, elsewhere = tmp_path / "results", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "manifests").symlink_to(elsewhere)
    with pytest.raises(FhbenchError) as err:
        write_results(build_tables(board), out, board)
    assert "would be written outside" in one_line(err) and str(elsewhere) not in one_line(err)
    assert list(elsewhere.iterdir()) == [] and sorted(p.name for p in out.iterdir()) == ["manifests"]


def test_two_runs_that_would_share_a_file_are_refused(board, tmp_path):
    board.save("a_x8", P, 8, "e", lb_metrics(0.8, 25.0), {})
    board.save("a", P, 8, "x8_e", lb_metrics(0.7, 25.0), {})  # both a_x8_x8_e.json
    with pytest.raises(FhbenchError) as err:
        write_results(build_tables(board), tmp_path / "out", board)
    assert "'a_x8' (e, x8)" in one_line(err) and "'a' (x8_e, x8)" in one_line(err)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*"))


def _no_constants(name):
    raise ValueError(f"non-standard JSON constant {name}")


def test_written_manifests_are_strict_json(board, tmp_path):
    write_results(build_tables(board), tmp_path / "out", board)
    text = (tmp_path / "out" / "manifests" / P / "hr_hr_sface.json").read_text()
    body = json.loads(text, parse_constant=_no_constants)
    assert body["metrics"]["psnr"] is None and body["manifest"]["timing"]["rate"] is None
    assert body["non_finite"] == {"metrics.psnr": "inf", "manifest.timing.rate": "nan"}
    back = strict_json.loads(text)
    assert back["metrics"]["psnr"] == math.inf and math.isnan(back["manifest"]["timing"]["rate"])
    assert back["metrics"]["accuracy"] == 0.99


def test_report_embeds_strict_json(board):
    page = render_report(board)
    blocks = re.findall(r"<pre>(.*?)</pre>", page, re.S)
    assert len(blocks) == 4  # metrics and manifest of both runs
    for block in blocks:
        json.loads(html.unescape(block), parse_constant=_no_constants)
    assert "&quot;psnr&quot;: null" in page and "&quot;metrics.psnr&quot;: &quot;inf&quot;" not in page
    assert "&quot;psnr&quot;: &quot;inf&quot;" in page  # the metrics block's own map


# --- paths from lists and protocol options ---------------------------------------------------

def test_inside_root(tmp_path):
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    assert inside_root(root, "pairs.txt", "x") == root / "pairs.txt"
    assert inside_root(root, "sub/../b.txt", "x") == root / "sub/../b.txt"
    assert inside_root(root, str(root / "sub" / "c"), "x", allow_absolute=True) == root / "sub" / "c"
    link = tmp_path / "link"
    link.symlink_to(root)  # a dataset folder that is a link to another disk still works
    assert inside_root(link, "sub/x.txt", "x") == link / "sub/x.txt"
    for bad in ("../x", "sub/../../x", "/etc/passwd", "a\0b", "", ".", "sub/..", 5, None):
        with pytest.raises(DataError, match="^what "):
            inside_root(root, bad, "what")
    with pytest.raises(DataError, match="leads outside"):
        inside_root(root, str(tmp_path / "x"), "what", allow_absolute=True)


@pytest.mark.parametrize("lineno,entry", [(2, "../outside\t1\t2"), (4, "Ariel_Sharon\t1\t/etc\t3"),
                                          (3, "..\t1\t3")])
def test_pairs_entries_leading_out_are_refused(tiny_lfw, lineno, entry):
    (tiny_lfw / "outside").mkdir()  # so that the OS would resolve ../outside/../outside_0001.jpg
    for k in (1, 2, 3):
        shutil.copyfile(tiny_lfw / "aligned-112x96" / "Ariel_Sharon" / f"Ariel_Sharon_{k:04d}.jpg",
                        tiny_lfw / f"outside_{k:04d}.jpg")
        shutil.copyfile(tiny_lfw / f"outside_{k:04d}.jpg", tiny_lfw / f".._{k:04d}.jpg")
    path = tiny_lfw / "pairs.txt"
    lines = path.read_text().splitlines()
    lines[lineno - 1] = entry
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as err:
        LFW(tiny_lfw).pairs()
    assert one_line(err).startswith(f"{path}:{lineno}: name ") and "is not a file or folder name" in str(err.value)


def test_people_txt_names_leading_out_are_refused(tiny_lfw):
    (tiny_lfw / "people.txt").write_text("1\n2\n../x\t1\nAriel_Sharon\t3\n")
    with pytest.raises(DataError, match=re.escape(f"{tiny_lfw / 'people.txt'}:3: name '../x'")):
        LFW(tiny_lfw).all_faces()


def protocol(proto_dir, name, task, options, dataset="lfw"):
    spec = {"name": name, "summary": "test", "dataset": dataset, "task": task, "degradation": "bicubic",
            "scales": [8], "default_scale": 8, "metrics": ["psnr"], "primary_metric": "psnr", "options": options}
    (proto_dir / f"{name}.yaml").write_text(yaml.safe_dump(spec))
    return load_protocol(name)


@pytest.mark.parametrize("filename", ["../secret.txt", "SECRET_ABS", "aligned-112x96/../../secret.txt"])
def test_protocol_filename_outside_the_dataset_is_refused_without_its_content(tiny_lfw, proto_dir, filename):
    secret = tiny_lfw.parent / "secret.txt"
    secret.write_text("TOPSECRET 42\nroot:x:0:0\n")
    filename = str(secret) if filename == "SECRET_ABS" else filename
    spec = protocol(proto_dir, "evil-pairs", "pairs-10fold", {"pairs": "pairs", "pairs_args": {"filename": filename}})
    with pytest.raises(FhbenchError) as err:
        TASKS.get("pairs-10fold")(spec, tiny_lfw)
    message = one_line(err)
    assert "TOPSECRET" not in message and "root:x" not in message
    assert f"option filename) {filename!r}" in message


def test_blufr_filename_and_image_list_entries_leading_out_are_refused(tiny_lfw, tmp_path):
    write_mat(tmp_path, valid_contents())  # beside the LFW folder, not in it
    with pytest.raises(DataError, match=r"option filename\) '\.\./blufr_lfw_config\.mat' leads outside"):
        LFW(tiny_lfw).blufr("../blufr_lfw_config.mat")
    contents = valid_contents()
    contents["imageList"][0, 0] = "../../etc/passwd_0001.jpg"
    with pytest.raises(DataError, match=r"imageList\{1\} '\.\./\.\./etc/passwd_0001\.jpg' is not a file"):
        load_blufr_config(write_mat(tmp_path, contents))


def small_celeba(root):
    """A CelebA folder the reader accepts: four listed images (their bytes are never read here)."""
    (root / "img_align_celeba").mkdir(parents=True)
    names, ids = ["000001.jpg", "000002.jpg", "000003.jpg", "000004.jpg"], [1, 1, 2, 2]
    for n in names:
        (root / "img_align_celeba" / n).write_bytes(b"not read")
    (root / "identity_CelebA.txt").write_text("".join(f"{n} {i}\n" for n, i in zip(names, ids)))
    (root / "list_eval_partition.txt").write_text("".join(f"{n} 2\n" for n in names))
    return root


def test_celeba_pair_lists_outside_the_folder_are_refused(tmp_path):
    root = small_celeba(tmp_path / "celeba")
    text = "1\t1\n1\t000001.jpg\t000002.jpg\n1\t000001.jpg\t2\t000003.jpg\n"
    for where in (root / "p.txt", tmp_path / "elsewhere.txt"):
        where.write_text(text)
    reader = CelebA(root)
    assert len(reader.pairs("p.txt").left) == len(reader.pairs(root / "p.txt").left) == 2
    for outside in (tmp_path / "elsewhere.txt", "../elsewhere.txt", "/etc/passwd"):
        with pytest.raises(DataError, match="CelebA pair list .* leads outside"):
            reader.pairs(outside)


def test_face_sets_refuse_paths_out_of_their_folder(tmp_path):
    FaceSet("t", tmp_path, ["a.jpg", "b/c.jpg", "b/../d.jpg"], np.zeros(3, np.int64), ["x"], None)
    for bad in ("../x.jpg", "b/../../x.jpg", "/etc/passwd", "", "a\0.jpg"):
        with pytest.raises(DataError, match=re.escape(repr(bad))):
            FaceSet("t", tmp_path, ["a.jpg", bad], np.zeros(2, np.int64), ["x"], None)


def test_scface_selection_values_of_the_wrong_type_are_one_line_errors():
    with pytest.raises(DataError, match="cameras must be a list of integers"):
        _checked(["a"], "cameras", range(1, 8))
    with pytest.raises(DataError, match="cameras must be a list of integers"):
        _checked(3, "cameras", range(1, 8))
    assert _checked((1, 2), "cameras", range(1, 8)) == [1, 2]


# --- selections ----------------------------------------------------------------------------

def test_every_shipped_protocol_names_a_marked_selection_with_fitting_arguments():
    import inspect

    for path in sorted(PROTOCOL_DIRS[0].glob("*.yaml")):
        spec = parse_protocol(path)
        task, reader = TASKS.get(spec.task), DATASETS.get(spec.dataset)
        for option in ("selection", "pairs"):
            if option in task.OPTIONS:
                name = spec.options.get(option, task.OPTIONS[option])
                assert name in selection_names(reader), (path.name, name)
                inspect.signature(getattr(reader, name)).bind(None, **spec.options.get(f"{option}_args", {}))
    assert selection_names(LFW) == ["all_faces", "blufr", "pairs", "people"]


@pytest.mark.parametrize("name", ["inventory", "_check_people", "root", "__init__", "nope"])
def test_unmarked_or_unknown_selection_is_a_config_error(tiny_lfw, proto_dir, name):
    spec = protocol(proto_dir, "bad-sel", "image-quality", {"selection": name})
    with pytest.raises(ConfigError) as err:
        TASKS.get("image-quality")(spec, tiny_lfw)
    assert one_line(err) == (f"protocol bad-sel: option selection names {name!r}, which is not a selection of "
                             "dataset LFW (known: all_faces, blufr, pairs, people)")


@pytest.mark.parametrize("args,expected", [
    ({"min_imgs": 4}, r"option selection_args does not fit people\(\): .*'min_imgs'.* \(accepted arguments: "
                      r"min_images\)$"),
    ({"min_images": "4"}, r"option selection_args\.min_images must be an integer \(its default is 4\), got '4'$"),
    ({"min_images": True}, r"option selection_args\.min_images must be an integer .*, got True$"),
])
def test_selection_arguments_that_do_not_fit_are_config_errors(tiny_lfw, proto_dir, args, expected):
    spec = protocol(proto_dir, "bad-args", "gallery-probe", {"selection": "people", "selection_args": args,
                                                             "repeats": 2})
    with pytest.raises(ConfigError) as err:
        TASKS.get("gallery-probe")(spec, tiny_lfw)
    assert re.search(r"^protocol bad-args: " + expected, one_line(err))


def test_selection_arguments_that_are_not_a_mapping_fail_when_the_protocol_loads(tiny_lfw, proto_dir):
    """The typed loader checks a task option's type (its default's) as the protocol loads."""
    with pytest.raises(ConfigError) as err:
        protocol(proto_dir, "bad-args", "gallery-probe", {"selection": "people", "selection_args": [4], "repeats": 2})
    assert re.search(r"bad-args\.yaml: options\.selection_args: must be a mapping, got list \[4\]$", one_line(err))


class SplitReader:
    """A reader whose selection is a fixed split with per-probe and per-gallery fields of one length."""

    def __init__(self, data_root):
        self.root = data_root

    @selection
    def split(self):
        faces = FaceSet("fake", self.root, ["a.jpg", "b.jpg"], np.array([0, 1]), ["p", "q"], None)
        return ScfaceSplit(faces, faces, [], np.array([1, 2]), np.array([3, 3]), np.array([1, 2]), np.array([2, 3]))


@pytest.mark.parametrize("field", ["gallery_camera", "notes", "__class__", "probe"])
def test_probe_groups_name_declared_per_probe_fields_only(tmp_path, proto_dir, monkeypatch, field):
    DATASETS.names()  # load the plug-ins before adding one
    monkeypatch.setitem(DATASETS._entries, "fake-split", Entry("fake-split", SplitReader))
    spec = protocol(proto_dir, "groups", "gallery-probe", {"selection": "split", "probe_groups": field},
                    dataset="fake-split")
    with pytest.raises(ConfigError) as err:
        TASKS.get("gallery-probe")(spec, tmp_path)
    assert one_line(err) == (f"protocol groups: option probe_groups {field!r} is not a per-probe field of "
                             "selection split (fields: probe_camera, probe_distance)")
    spec = protocol(proto_dir, "groups", "gallery-probe", {"selection": "split", "probe_groups": "probe_distance"},
                    dataset="fake-split")
    assert TASKS.get("gallery-probe")(spec, tmp_path).groups.tolist() == ["2", "3"]


# --- a wrong pairs.txt fails before any image is read -------------------------------------

def two_fold_pairs_text():
    matched = [f"{a}\t{i}\t{j}" for _, a, i, b, j, same in TINY_PAIRS if same]
    mismatched = [f"{a}\t{i}\t{b}\t{j}" for _, a, i, b, j, same in TINY_PAIRS if not same]
    half = len(matched) // 2
    body = matched[:half] + mismatched[:half] + matched[half:] + mismatched[half:]
    return "\n".join([f"2\t{half}"] + body) + "\n"


@pytest.fixture
def no_image_reads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("an image was read")

    # the bindings the run reads images through (hashing, then HR faces); not images.py's own
    # names, which a module imported lazily during the test would keep after it
    for module, name in ((pipeline, "read_batch"), (faceset_mod, "read_image_bytes")):
        monkeypatch.setattr(module, name, refuse)


def test_two_fold_pairs_fail_when_the_task_is_built(tiny_lfw, shipped, no_image_reads, tmp_path):
    (tiny_lfw / "pairs.txt").write_text(two_fold_pairs_text())
    assert set(LFW(tiny_lfw).pairs().fold.tolist()) == {0, 1}  # a valid list, just not 10-fold
    expected = (f"protocol lfw-10fold: {tiny_lfw / 'pairs.txt'} has 2 folds (1, 2); 10-fold verification "
                "needs folds 1..10, each with pairs")
    with pytest.raises(DataError) as err:
        TASKS.get("pairs-10fold")(load_protocol(P), tiny_lfw)
    assert one_line(err) == expected
    opts = runner.RunOptions(model="bicubic", protocol=P, scale=8, data_root=str(tiny_lfw),
                             store=str(tmp_path / "r.sqlite"), cache_dir="", progress=False)
    with pytest.raises(DataError, match=re.escape(expected)):
        runner.run(opts)


def test_folds_without_impostor_or_genuine_pairs_are_refused(tiny_lfw):
    pairs = LFW(tiny_lfw).pairs()
    check_folds(pairs, "here")  # the tiny list: 10 folds of 2 + 2
    for fill, kind in ((True, "impostor"), (False, "genuine")):
        broken = LFW(tiny_lfw).pairs()
        broken.is_same = np.where(broken.fold == 3, fill, broken.is_same)
        with pytest.raises(DataError, match=f"^here: .*pairs.txt: fold 4 has no {kind} pairs$"):
            check_folds(broken, "here")


# --- '$', '_' and other mathtext in run names -----------------------------------------------

NAMES = ["_under", "a$b", "p$^$q", "x_$1$"]  # select_runs order: by name; p$^$q broke mathtext
TOY = {"toy-ident": {"metrics": ["rank1", "psnr", "ssim"], "primary_metric": "rank1"},
       "toy-blufr": {"metrics": ["vr", "vr_std", "dir", "dir_std"], "primary_metric": "vr"}}


@pytest.fixture
def dollar_store(tmp_path, proto_dir):
    for name, extra in TOY.items():
        spec = {"name": name, "summary": f"synthetic {name}", "dataset": "lfw", "task": "pairs-10fold",
                "degradation": "bicubic", "scales": [4, 8], "default_scale": 8, **extra}
        (proto_dir / f"{name}.yaml").write_text(yaml.safe_dump(spec))
    rng = np.random.default_rng(0)
    st = ResultStore(tmp_path / "r.sqlite")
    same = np.tile([True, True, False, False], 15)
    for k, (model, scale) in enumerate([("hr", "hr"), ("bicubic", 8), ("a$b", 4)] + [(n, 8) for n in NAMES]):
        arrays = {"pair_scores": np.where(same, 1.0, 0.0) + rng.normal(0, 0.5, 60), "pair_is_same": same,
                  "pair_fold": np.repeat(np.arange(10), 6), "psnr": rng.normal(25, 2, 20),
                  "ssim": rng.uniform(0.4, 0.9, 20)}
        st.save(model, P, scale, "e$v", lb_metrics(0.8 + k / 100, math.inf if model == "hr" else 25.0), {}, arrays)
    fars = np.array([1e-3, 1e-2, 1e-1, 1.0])
    for model in NAMES[1:]:
        st.save(model, "toy-ident", 8, "e$v", {"rank1": 0.5}, {}, {"cmc": np.sort(rng.uniform(0.3, 1, 12))})
        st.save(model, "toy-blufr", 8, "e$v", {"vr": 0.5, "dir": 0.4}, {},
                {"vr_curve_far": fars, "vr_curve": np.sort(rng.uniform(0, 1, (10, 4))), "dir_curve_far": fars,
                 "dir_curve": np.sort(rng.uniform(0, 1, (10, 4)))})
    return st


KINDS = [("roc", P, {"scale": 8}), ("csd", P, {"scale": 8}), ("scale", P, {}), ("cmc", "toy-ident", {}),
         ("vr", "toy-blufr", {}), ("dir", "toy-blufr", {})]


def svg_texts(path):
    return ["".join(t.itertext()) for t in ET.parse(path).getroot().iter("{http://www.w3.org/2000/svg}text")]


@pytest.mark.parametrize("kind,protocol_name,options", KINDS, ids=[k[0] for k in KINDS])
def test_names_with_mathtext_characters_draw_as_typed(dollar_store, tmp_path, kind, protocol_name, options):
    fig = plots.draw(kind, dollar_store, protocol_name, **options)
    (ax,) = fig.axes
    shown = NAMES if protocol_name == P else NAMES[1:]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert [n for n in legend if n in NAMES] == shown  # '_under' is not dropped as an unlabelled line
    png, svg = plots.save_figure(fig, tmp_path / "f.png"), plots.save_figure(fig, tmp_path / "f.svg")
    assert png.stat().st_size > 1000
    texts = svg_texts(svg)
    assert all(n in texts for n in shown) and any("e$v" in t for t in texts)  # literal, not mathtext


def test_sample_grid_columns_draw_as_typed(tmp_path):
    columns = ["LR", "a$b", "p$^$q", "x_$1$", "HR"]
    grid = SampleGrid(P, 8, ["k"], columns, np.zeros((1, 5, 3, 16, 14)))
    svg = plots.save_figure(plots.plot_sample_grid(grid), tmp_path / "grid.svg")
    assert svg_texts(svg) == columns


def test_report_draws_runs_named_with_dollars(dollar_store, tmp_path):
    page = build_report(dollar_store, tmp_path / "report.html").read_text()
    assert page.count("<img ") >= 6 and all(html.escape(n) in page for n in NAMES)
