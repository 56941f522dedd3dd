"""Leaderboards (hr and bicubic reference rows, +- std over folds/trials, missing
references, --write) and the self-contained HTML report, rendered in headless Chromium."""
import base64
import csv
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from PIL import Image

from benchmark.training.trainer import train
from benchmark.cli import main
from benchmark.errors import FhbenchError
from benchmark.reporting.leaderboard import build_tables, format_tables, write_results
from benchmark.contracts.metric import MetricSpec
from benchmark.reporting.report import build_report
from benchmark.engine.store import ResultStore

PROTOCOL = "lfw-10fold"
N_IMAGES = 11   # see test_report_is_self_contained
N_DETAILS = 9   # 7 runs' manifests + one "figures not drawn" list per protocol
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def lfw_metrics(acc, psnr):
    return {"accuracy": acc, "accuracy_std": 0.01, "auc": acc, "eer": 1 - acc, "psnr": psnr, "psnr_std": 1.0,
            "ssim": 0.7, "ssim_std": 0.1, "fr_loss": 1.0, "fr_loss_std": 0.1}


def run_arrays(rng, quality, hr=False):
    same = np.tile([True, False], 50)
    psnr = np.full(24, np.inf) if hr else rng.normal(25, 2, 24)
    return {"pair_scores": np.where(same, quality, 0) + rng.normal(0, 0.4, 100), "pair_is_same": same,
            "pair_fold": np.repeat(np.arange(10), 10), "psnr": psnr, "ssim": rng.uniform(0.5, 0.9, 24)}


@pytest.fixture
def protocols(tmp_path, monkeypatch, toy_metrics):
    """The shipped protocols plus toy-blufr, whose VR has a std over trials; its metrics are
    registered as a plug-in would (header = name, 4 decimals, higher is better)."""
    toy_metrics(MetricSpec("toy_vr", "toy_vr", std="toy_vr_std"), MetricSpec("toy_dir", "toy_dir"))
    folder = tmp_path / "protocols"
    folder.mkdir()
    spec = {"name": "toy-blufr", "summary": "synthetic BLUFR", "dataset": "lfw", "task": "pairs-10fold",
            "degradation": "bicubic", "scales": [8], "default_scale": 8,
            "metrics": ["toy_vr", "toy_vr_std", "toy_dir"], "primary_metric": "toy_vr"}
    (folder / "toy-blufr.yaml").write_text(yaml.safe_dump(spec))
    monkeypatch.setenv("FHBENCH_PROTOCOLS", str(folder))


@pytest.fixture
def store(tmp_path, protocols):
    rng = np.random.default_rng(0)
    st = ResultStore(tmp_path / "r.sqlite")
    for model, scale, acc, quality in (("hr", "hr", 0.99, 3.0), ("bicubic", 8, 0.95, 0.8), ("srnet", 8, 0.85, 1.5),
                                       ("srnet", 4, 0.93, 2.0), ("other", 8, 0.80, 0.5)):
        manifest = {"model": {"spec": model}, "seed": 0, "note": "<b>escaped</b>"}
        st.save(model, PROTOCOL, scale, "sface", lfw_metrics(acc, np.inf if model == "hr" else 25.0), manifest,
                run_arrays(rng, quality, hr=model == "hr"))
    st.save("srnet", "toy-blufr", 8, "sface", {"toy_vr": 0.6, "toy_vr_std": 0.02, "toy_dir": 0.4}, {}, {})
    st.save("bicubic", "toy-blufr", 8, "sface", {"toy_vr": 0.7, "toy_vr_std": 0.03, "toy_dir": 0.5}, {}, {})
    return st


def md_row(md, label):
    (line,) = [ln for ln in md.splitlines() if ln.startswith(f"| {label} |")]
    return [c.strip() for c in line.strip("|").split("|")]


# --- leaderboards ----------------------------------------------------------------------

def test_hr_first_bicubic_last_never_best(store):
    (x8,) = build_tables(store, protocol=PROTOCOL, scale=8)
    assert [r["model"] for r in x8.rows] == ["hr (no degradation)", "srnet", "other", "bicubic (no SR)"]
    assert [r["reference"] for r in x8.rows] == [True, False, False, True]
    md = format_tables([x8], "md")
    # bicubic has the highest accuracy of the non-HR rows, but it is the lower bound: not bold
    assert md_row(md, "bicubic (no SR)")[1] == "95.00 ± 1.00"
    assert md_row(md, "srnet")[1] == "**85.00 ± 1.00**"
    assert "Missing reference rows" not in md
    (x4,) = build_tables(store, protocol=PROTOCOL, scale=4)
    assert [r["model"] for r in x4.rows] == ["hr (no degradation)", "srnet"]
    assert ("Missing reference rows: `fhbench run --model bicubic --protocol lfw-10fold --scale 4 "
            "--evaluator sface`") in format_tables([x4], "md")


def test_std_over_trials_and_missing_hr(store):
    (t,) = build_tables(store, protocol="toy-blufr")
    assert t.metrics == ["toy_vr", "toy_dir"] and t.with_std == ["toy_vr"]
    md = format_tables([t], "md")
    assert md_row(md, "Model") == ["Model", "toy_vr", "toy_dir"]  # their registered headers
    assert md_row(md, "srnet") == ["srnet", "**0.6000 ± 0.0200**", "**0.4000**"]
    assert md_row(md, "bicubic (no SR)") == ["bicubic (no SR)", "0.7000 ± 0.0300", "0.5000"]
    assert "`fhbench run --model hr --protocol toy-blufr --evaluator sface`" in md
    rows = list(csv.reader(io.StringIO(format_tables([t], "csv"))))
    assert rows[0][5:] == ["toy_vr", "toy_vr_std", "toy_dir", "best"]
    assert rows[1][5:] == ["0.6", "0.02", "0.4", "toy_vr;toy_dir"]


def test_filters(store):
    store.save("srnet", PROTOCOL, 8, "facenet", lfw_metrics(0.7, 24.0), {})
    assert {(t.protocol, t.scale, t.evaluator) for t in build_tables(store, evaluator="facenet")} == \
        {(PROTOCOL, 8, "facenet")}
    (hr_only,) = build_tables(store, protocol=PROTOCOL, scale="hr")
    assert [r["model"] for r in hr_only.rows] == ["hr (no degradation)"]
    with pytest.raises(FhbenchError, match=r"at scale 2 \(stored levels: hr, x4, x8\)"):
        build_tables(store, protocol=PROTOCOL, scale=2)


def test_write_results(store, tmp_path):
    res = CliRunner().invoke(main, ["leaderboard", "--write", str(tmp_path / "results"), "--store", str(store.path)])
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in (tmp_path / "results").iterdir())
    assert names == ["lfw-10fold.csv", "lfw-10fold.md", "manifests", "toy-blufr.csv", "toy-blufr.md"]
    # each shown run's manifest, the hr run once although it heads both lfw-10fold tables
    manifests = sorted(str(p.relative_to(tmp_path / "results" / "manifests"))
                       for p in (tmp_path / "results" / "manifests").rglob("*.json"))
    assert manifests == ["lfw-10fold/bicubic_x8_sface.json", "lfw-10fold/hr_hr_sface.json",
                         "lfw-10fold/other_x8_sface.json", "lfw-10fold/srnet_x4_sface.json",
                         "lfw-10fold/srnet_x8_sface.json", "toy-blufr/bicubic_x8_sface.json",
                         "toy-blufr/srnet_x8_sface.json"]
    other = json.loads((tmp_path / "results" / "manifests" / "lfw-10fold" / "other_x8_sface.json").read_text())
    assert other["metrics"]["accuracy"] == 0.80 and other["manifest"]["note"] == "<b>escaped</b>"
    md = (tmp_path / "results" / "lfw-10fold.md").read_text()
    assert md.startswith("# lfw-10fold\n") and "### lfw-10fold, x4, evaluator sface" in md
    assert "### lfw-10fold, x8, evaluator sface" in md
    rows = list(csv.reader(io.StringIO((tmp_path / "results" / "lfw-10fold.csv").read_text())))
    assert rows[0][:5] == ["protocol", "level", "evaluator", "model", "reference"]
    assert sum(r[0] == "protocol" for r in rows) == 1  # one header for both tables
    assert [(r[1], r[3]) for r in rows[1:]] == [("x4", "hr (no degradation)"), ("x4", "srnet"),
                                               ("x8", "hr (no degradation)"), ("x8", "srnet"), ("x8", "other"),
                                               ("x8", "bicubic (no SR)")]
    assert write_results(build_tables(store, protocol="toy-blufr"), tmp_path / "r2") == \
        [tmp_path / "r2" / "toy-blufr.md", tmp_path / "r2" / "toy-blufr.csv"]


# --- the HTML report -------------------------------------------------------------------

class DomCounter(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.classes, self.img_src, self.text = {}, {}, [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags[tag] = self.tags.get(tag, 0) + 1
        for cls in (attrs.get("class") or "").split():
            self.classes[cls] = self.classes.get(cls, 0) + 1
        if tag == "img":
            self.img_src.append(attrs.get("src", ""))

    def handle_data(self, data):
        self.text.append(data)


def parse(html_text):
    dom = DomCounter()
    dom.feed(html_text)
    return dom


def chromium():
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture
def report(store, tiny_lfw, tmp_path):
    out = tmp_path / "site" / "report.html"
    res = CliRunner().invoke(main, ["report", "-o", str(out), "--store", str(store.path), "--data-root",
                                    str(tiny_lfw), "--images", "0,5"])
    assert res.exit_code == 0, res.output
    return out


def test_report_is_self_contained(report):
    text = report.read_text()
    dom = parse(text)
    assert dom.tags.get("script", 0) == 0 and dom.tags.get("link", 0) == 0
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", text) and "url(" not in text
    # leaderboards: lfw-10fold x4 (hr) and x8 (hr, bicubic), toy-blufr x8 (bicubic)
    assert dom.classes["leaderboard"] == 3 and dom.classes["reference"] == 4
    # lfw-10fold: ROC and CSD of PSNR and SSIM at x4 and x8, accuracy and PSNR vs scale, a sample
    # grid; toy-blufr (no arrays): VR vs scale and a sample grid
    assert len(dom.img_src) == N_IMAGES
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", text)
    assert captions[:8] == ["ROC (log FAR), x4, sface", "CSD of PSNR, x4, sface", "CSD of SSIM, x4, sface",
                            "ROC (log FAR), x8, sface", "CSD of PSNR, x8, sface", "CSD of SSIM, x8, sface",
                            "accuracy vs scale, sface", "psnr vs scale, sface"]
    # the sample grids show the runs whose manifest spec can be rebuilt (only bicubic here)
    assert captions[8] == ("LR | bicubic | HR: Ariel_Sharon/Ariel_Sharon_0001.jpg, "
                           "Arnold_Schwarzenegger/Arnold_Schwarzenegger_0002.jpg")
    assert captions[9] == "toy_vr vs scale, sface" and captions[10].startswith("LR | bicubic | HR: ")
    assert "srnet not shown: unknown model 'srnet'" in "".join(dom.text)  # its spec cannot be rebuilt
    for src in dom.img_src:
        assert src.startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as im:
            assert im.size[0] == 525  # 3.5 in at 150 dpi
    # every run's manifest, escaped; the figures toy-blufr cannot draw are listed
    assert dom.tags["details"] == N_DETAILS
    assert "<b>escaped</b>" not in text and "&lt;b&gt;escaped&lt;/b&gt;" in text
    assert "CMC, x8, sface: protocol lfw-10fold stores no CMC" in "".join(dom.text)


def test_report_sample_grids_take_trained_weights_by_row(store, tiny_lfw, tmp_path):
    """A trained baseline's row is shown once --weights names its file, and refused (named,
    not shown) when the file is not the one its run was scored with."""
    faces = tmp_path / "faces" / "P0"
    faces.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k in range(2):
        img = cv2.resize(rng.random((14, 12, 3)), (96, 112), interpolation=cv2.INTER_CUBIC) * 255
        cv2.imwrite(str(faces / f"{k}.png"), np.clip(img, 0, 255).astype(np.uint8))
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"name": "srresnet", "blocks": 1, "filters": 4}, "data": {"hr_size": [16, 16], "scale": 8},
        "batch_size": 2, "stages": [{"name": "mse", "steps": 1, "lr": 1.0e-3, "loss_weights": {"mse": 1.0}}]}))
    weights = train("srresnet", config, faces.parent, tmp_path / "runs", device="cpu").weights
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    store.save("tiny-srresnet", PROTOCOL, 8, "sface", lfw_metrics(0.9, 25.0),
               {"model": {"spec": "srresnet", "weights_sha256": sha}}, run_arrays(rng, 1.0))

    def captions(*extra):
        out = tmp_path / f"r{len(extra)}.html"
        res = CliRunner().invoke(main, ["report", "-o", str(out), "--store", str(store.path), "--data-root",
                                        str(tiny_lfw), "--images", "0", *extra])
        assert res.exit_code == 0, res.output
        text = out.read_text()
        return re.findall(r"<figcaption>(LR \|.*?)</figcaption>", text), "".join(parse(text).text)

    shown, notes = captions()
    assert "tiny-srresnet" not in shown[0] and "tiny-srresnet not shown" in notes
    shown, notes = captions("--weights", f"tiny-srresnet={weights}")
    assert shown[0].startswith("LR | bicubic | tiny-srresnet | HR") and "tiny-srresnet not shown" not in notes
    other = tmp_path / "other.pt"  # same architecture, other weights
    ckpt = torch.load(weights, weights_only=True)
    ckpt["model_state"] = {k: v + 1 if v.is_floating_point() else v for k, v in ckpt["model_state"].items()}
    torch.save(ckpt, other)
    shown, notes = captions("--weights", f"tiny-srresnet={other}")
    assert "tiny-srresnet" not in shown[0] and "are not those its stored run was scored with" in notes


def find_in_screenshot(shot: np.ndarray, image: np.ndarray):
    """(mean absolute difference in 8-bit levels, (x, y)) of the best placement of ``image`` in
    ``shot`` (both H x W x 3 float): a coarse search at 1/4 size, then exact offsets around it."""
    import cv2

    h, w = image.shape[:2]
    small = cv2.resize(shot, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA)
    score = cv2.matchTemplate(small, cv2.resize(image, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA),
                              cv2.TM_SQDIFF)
    _, _, (x, y), _ = cv2.minMaxLoc(score)
    best = (np.inf, None)
    for dy in range(-4, 5):
        for dx in range(-4, 5):
            x0, y0 = 4 * x + dx, 4 * y + dy
            patch = shot[max(y0, 0):y0 + h, max(x0, 0):x0 + w]
            if x0 >= 0 and y0 >= 0 and patch.shape == image.shape:
                best = min(best, (float(np.abs(patch - image).mean()), (x0, y0)), key=lambda b: b[0])
    return best


@pytest.mark.skipif(chromium() is None, reason="needs a Chromium binary (scripts/ensure-chromium installs it)")
def test_report_renders_in_headless_chromium(report, tmp_path):
    """Chromium loads the file (no server), builds the tables, and paints every embedded
    figure: each PNG of the page is found pixel for pixel in a screenshot of the whole page."""
    shot = tmp_path / "shot.png"
    width, height = 1200, 6000  # tall enough for the whole page: every figure is on the screenshot
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'chromium-profile'}", "--hide-scrollbars", "--force-device-scale-factor=1",
           f"--window-size={width},{height}", f"--screenshot={shot}", "--dump-dom", report.resolve().as_uri()]
    env = {**os.environ, "HOME": str(tmp_path)}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    # the DOM after rendering: three leaderboards with their rows and marked best values
    dom = parse(done.stdout)
    assert dom.classes["leaderboard"] == 3 and dom.tags["table"] == 3 and dom.classes["reference"] == 4
    assert dom.tags["details"] == N_DETAILS
    text = "".join(dom.text)
    assert "hr (no degradation)" in text and "bicubic (no SR)" in text and "Runs" in text
    assert re.search(r"<th scope=\"row\">srnet</th><td><strong>85\.00 ± 1\.00</strong></td>", done.stdout)
    assert len(dom.img_src) == N_IMAGES and all(s.startswith("data:image/png;base64,") for s in dom.img_src)
    # the pixels: every embedded figure painted at its natural size (no broken-image icons)
    with Image.open(shot) as im:
        assert im.size == (width, height)
        page = np.asarray(im.convert("RGB"), dtype=np.float32)
    places = set()
    for src in dom.img_src:
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as im:
            figure = np.asarray(im.convert("RGB"), dtype=np.float32)
        diff, where = find_in_screenshot(page, figure)
        assert diff < 1.0, f"a {figure.shape[1]}x{figure.shape[0]} figure is not on the screenshot (diff {diff:.1f})"
        places.add(where)
    assert len(places) >= N_IMAGES - 1  # the two sample grids are the same picture; all else differs


def test_report_bad_input(tmp_path, store):
    with pytest.raises(FhbenchError, match="must end in .html"):
        build_report(store, tmp_path / "report.pdf")
    with pytest.raises(FhbenchError, match="no runs in"):
        build_report(ResultStore(tmp_path / "empty.sqlite"), tmp_path / "r.html")
    res = CliRunner().invoke(main, ["report", "-o", str(tmp_path / "r.html"), "--store", str(tmp_path / "no.sqlite")])
    assert res.exit_code == 2 and "no results store at" in res.output
    assert not Path(tmp_path / "no.sqlite").exists()
