"""Fetching LFW (served here from memory: no network in tests) and `fhbench datasets`, which
reports per dataset what a data root holds, what is missing and where to get it."""
import hashlib
import io
import tarfile
import urllib.error

import pytest
from click.testing import CliRunner

from benchmark.cli import main
from benchmark.faces import fetch
from benchmark.faces.fetch import LFW_URL, fetch_lfw
from benchmark.datasets.lfw import LFW
from benchmark.errors import DataError

from conftest import LFW_SHARED


def tgz(members):
    """A .tgz in memory holding {name: bytes} (a name ending in '/' is a folder)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name.rstrip("/"))
            if name.endswith("/"):
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def md5(data):
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def server(monkeypatch):
    """Fake LFW site: pairs.txt, people.txt and lfw-deepfunneled.tgz with their MD5s patched in."""
    face = (LFW_SHARED / "aligned-112x96" / "Ariel_Sharon" / "Ariel_Sharon_0001.jpg")
    jpg = face.read_bytes() if face.is_file() else b"\xff\xd8 not really a jpeg"
    files = {
        "pairs.txt": b"1\t1\nAriel_Sharon\t1\t2\nAriel_Sharon\t1\tBo_Ba\t1\n",
        "people.txt": b"1\n2\nAriel_Sharon\t2\nBo_Ba\t1\n",
        "lfw-deepfunneled.tgz": tgz({"lfw-deepfunneled/": b"", "lfw-deepfunneled/Ariel_Sharon/": b"",
                                     "lfw-deepfunneled/Ariel_Sharon/Ariel_Sharon_0001.jpg": jpg,
                                     "lfw-deepfunneled/Ariel_Sharon/Ariel_Sharon_0002.jpg": jpg,
                                     "lfw-deepfunneled/Bo_Ba/Bo_Ba_0001.jpg": jpg}),
    }
    monkeypatch.setattr(fetch, "LFW_LISTS", {n: md5(files[n]) for n in ("pairs.txt", "people.txt")})
    archives = dict(fetch.LFW_ARCHIVES)
    archives["deepfunneled"] = ("lfw-deepfunneled.tgz", "lfw-deepfunneled", md5(files["lfw-deepfunneled.tgz"]))
    monkeypatch.setattr(fetch, "LFW_ARCHIVES", archives)
    calls = []

    def opener(url, timeout):
        calls.append(url)
        assert url.startswith(LFW_URL) and timeout > 0
        return io.BytesIO(files[url[len(LFW_URL):]])

    return files, opener, calls


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_fetch_lfw_gives_a_readable_root(tmp_path, server):
    files, opener, calls = server
    dest = fetch_lfw(tmp_path, opener=opener, log=lambda msg: None)
    assert dest == tmp_path / "lfw"
    assert (dest / "pairs.txt").read_bytes() == files["pairs.txt"]
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*.jpg")) == [
        "lfw-deepfunneled/Ariel_Sharon/Ariel_Sharon_0001.jpg", "lfw-deepfunneled/Ariel_Sharon/Ariel_Sharon_0002.jpg",
        "lfw-deepfunneled/Bo_Ba/Bo_Ba_0001.jpg"]
    assert leftovers(dest) == []
    lfw = LFW(tmp_path)
    assert lfw.image_root == dest / "lfw-deepfunneled" and len(lfw.all_faces()) == 3
    assert len(lfw.pairs().left) == 2
    # A second call finds everything in place and downloads nothing.
    n = len(calls)
    fetch_lfw(tmp_path, opener=opener, log=lambda msg: None)
    assert len(calls) == n == 3


def test_offline_is_one_clear_line_and_leaves_nothing(tmp_path):
    def offline(url, timeout):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    with pytest.raises(DataError) as err:
        fetch_lfw(tmp_path, opener=offline, log=lambda msg: None)
    msg = str(err.value)
    assert f"cannot download {LFW_URL}pairs.txt" in msg and "offline" in msg and "by hand" in msg
    assert "\n" not in msg
    assert list((tmp_path / "lfw").iterdir()) == []


def test_checksum_mismatch_keeps_nothing(tmp_path, server, monkeypatch):
    files, opener, _ = server
    files["lfw-deepfunneled.tgz"] = files["lfw-deepfunneled.tgz"][:-10] + b"0123456789"
    with pytest.raises(DataError, match=r"lfw-deepfunneled.tgz has MD5 [0-9a-f]{32}, expected"):
        fetch_lfw(tmp_path, opener=opener, log=lambda msg: None)
    dest = tmp_path / "lfw"
    assert not (dest / "lfw-deepfunneled").exists() and leftovers(dest) == []
    assert (dest / "pairs.txt").is_file()  # the lists that were verified stay


def test_archive_escaping_its_folder_is_refused(tmp_path, server, monkeypatch):
    files, opener, _ = server
    files["lfw-deepfunneled.tgz"] = tgz({"lfw-deepfunneled/x.jpg": b"x", "../escaped.txt": b"x"})
    archives = dict(fetch.LFW_ARCHIVES)
    archives["deepfunneled"] = ("lfw-deepfunneled.tgz", "lfw-deepfunneled", md5(files["lfw-deepfunneled.tgz"]))
    monkeypatch.setattr(fetch, "LFW_ARCHIVES", archives)
    with pytest.raises(DataError, match="cannot unpack lfw-deepfunneled.tgz"):
        fetch_lfw(tmp_path, opener=opener, log=lambda msg: None)
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "lfw" / "escaped.txt").exists()
    assert not (tmp_path / "lfw" / "lfw-deepfunneled").exists() and leftovers(tmp_path / "lfw") == []


def test_unknown_variant(tmp_path):
    with pytest.raises(DataError, match="unknown LFW variant 'aligned'"):
        fetch_lfw(tmp_path, variant="aligned")


def test_official_checksums_of_the_lists_match_the_real_files():
    if not (LFW_SHARED / "people.txt").is_file():
        pytest.skip("needs ../shared/data/lfw")
    for name, expected in fetch.LFW_LISTS.items():
        assert md5((LFW_SHARED / name).read_bytes()) == expected


# --- fhbench datasets ----------------------------------------------------------------------------------

def test_datasets_reports_found_missing_and_where(tiny_lfw):
    root = tiny_lfw.parent
    (root / "celeba").mkdir()
    (root / "celeba" / "identity_CelebA.txt").write_text("000001.jpg 1\r\n")
    (root / "scface" / "surveillance_cameras_all").mkdir(parents=True)
    result = CliRunner().invoke(main, ["datasets", "--data-root", str(root)])
    assert result.exit_code == 0, result.output
    out = result.output.splitlines()
    block = {}
    for line in out:
        if not line.startswith(" "):
            name = line.split()[1]
        block.setdefault(name, []).append(line)
    assert block["lfw"][0].startswith("ok  lfw")
    assert f"    found:   {tiny_lfw / 'pairs.txt'}" in block["lfw"]
    assert f"    missing: {tiny_lfw / 'people.txt'}" in block["lfw"]
    assert block["celeba"][0].startswith("n/a celeba")
    assert f"    found:   {root / 'celeba' / 'identity_CelebA.txt'}" in block["celeba"]
    assert f"    missing: {root / 'celeba' / 'img_align_celeba'}/" in block["celeba"]
    assert any("list_eval_partition.txt is missing" in ln and "mmlab.ie.cuhk.edu.hk" in ln for ln in block["celeba"])
    assert f"    missing: {root / 'scface' / 'mugshot_frontal_cropped_all'}/" in block["scface"]
    assert any("scface.org" in ln for ln in block["scface"])
    assert block["ar"][0].startswith("n/a ar") and any("never fetched" in ln for ln in block["ar"])


def test_datasets_fetch_offline(tmp_path, monkeypatch):
    def offline(url, timeout):
        raise urllib.error.URLError("Network is unreachable")

    monkeypatch.setattr(fetch.urllib.request, "urlopen", offline)
    result = CliRunner().invoke(main, ["datasets", "--data-root", str(tmp_path), "--fetch", "lfw"])
    assert result.exit_code == 2
    assert "cannot download http://vis-www.cs.umass.edu/lfw/pairs.txt (Network is unreachable)" in result.output
