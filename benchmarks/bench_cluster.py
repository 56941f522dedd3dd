"""One run on a single process against the same run on ``--cluster local:1`` and ``local:2``;
then a sweep on ``local:2``.

    PYTHONPATH=$PWD python benchmarks/bench_cluster.py [--data-root ../shared/data/lfw]
        [--n-images 900] [--protocol lfw-10fold] [--scale 8] [--chunk-size 256]
        [--sweep-models bicubic,nearest,hr] [--no-sweep] [--json PATH]

The run (issue 15): bicubic at x8 with SFace, cache off (every image computed), each
configuration in its own process:

- ``single_1thread``: one process, one thread (torch, onnxruntime, BLAS);
- ``single_all``: one process, every core (the default settings);
- ``local1`` and ``local2``: a ``LocalCluster`` of 1 and 2 worker processes with one thread each
  (the client too); the cluster's start-up is timed apart (``*_startup_s``); the run's time,
  which the speed-ups compare, includes each worker building the model and evaluator once
  (its worker plugin), so a small set shows mostly that fixed cost.

Printed: images/s of each; ``speedup`` = single_1thread / local2 and ``efficiency`` =
speedup / 2 (the goal on 2 free cores: >= 1.6 and >= 0.8); ``local2_vs_single_all``;
``overhead_per_shard_s`` = (local1 - single_1thread) / shards, what the scheduler, the
pickling and the client's cache writes cost per shard; ``identical``: every stored metric of
the three other runs equal, bit for bit, to ``single_1thread``'s.

The sweep: models (``--sweep-models``) x ``lfw-10fold`` and ``lfw-ident`` on ``local:2``, cache
off, cells in parallel: its wall time (``sweep_wall_s``) and each cell's time and status.

``--n-images N`` runs on a temporary LFW subset (``bench_faults.build_subset``: the first k
matched and mismatched pairs of each fold, k chosen for about N images), plus every other
image of the people it names, so ``lfw-ident`` has people with four images or more. The JSON
(``--json PATH``) holds every printed figure, with ``speedup``, ``efficiency``, ``identical``
and ``sweep_wall_s`` at the top level.

The figures mean something only on otherwise idle cores.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
ONE_THREAD = {"FHBENCH_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def subset_root(lfw: Path, n_images: int, dest: Path) -> int:
    """An LFW root of about ``n_images`` pair images (bench_faults' subset) and every other image
    of their people; how many pair images it holds."""
    from bench_faults import IMAGE_FOLDER, build_subset

    _, n = build_subset(lfw, n_images, dest)
    for person in (dest / IMAGE_FOLDER).iterdir():
        for src in (lfw / IMAGE_FOLDER / person.name).iterdir():
            if not (person / src.name).exists():
                os.symlink(src.resolve(), person / src.name)
    return n


def child(mode: dict) -> dict:
    """Run one configuration in a fresh process (its own thread settings); its figures."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    if mode.get("one_thread"):
        env.update(ONE_THREAD)
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(mode)], env=env, text=True,
                         stdout=subprocess.PIPE)
    if out.returncode != 0:
        sys.exit(f"bench_cluster: {mode['tag']} failed (exit {out.returncode})")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _metric_bits(metrics: dict) -> dict:
    import numpy as np

    return {k: np.float64(v).tobytes().hex() if isinstance(v, (int, float)) else repr(v) for k, v in metrics.items()}


def run_one(mode: dict) -> dict:
    """In the child: one run, single-process or on a fresh LocalCluster."""
    import torch

    from benchmark.engine import cluster as cl
    from benchmark.engine import runner

    if mode.get("one_thread"):
        torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    opts = runner.RunOptions(model="bicubic", protocol=mode["protocol"], scale=mode["scale"],
                             data_root=mode["data_root"], store=str(tmp / "store.sqlite"), cache_dir="",
                             chunk_size=mode["chunk_size"], progress=False, cluster=mode.get("cluster"))
    if not mode.get("cluster"):
        t0 = time.perf_counter()
        result = runner.run(opts)
        return {"run_s": time.perf_counter() - t0, "startup_s": 0.0, "metrics": _metric_bits(result["metrics"]),
                "n_images": result["manifest"]["data"]["n_images"]}
    t0 = time.perf_counter()
    with cl.connect(cl.parse_cluster(mode["cluster"])) as client:
        client.wait_for_workers(int(mode["cluster"].split(":")[1]))
        startup = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = runner.run(opts, client=client)
        seconds = time.perf_counter() - t0
    return {"run_s": seconds, "startup_s": startup, "metrics": _metric_bits(result["metrics"]),
            "n_images": result["manifest"]["data"]["n_images"]}


def sweep_one(mode: dict) -> dict:
    """In the child: the sweep's cells on a fresh ``local:2``."""
    import yaml

    from benchmark.engine import cluster as cl
    from benchmark.engine.runner import RunOptions
    from benchmark.engine.sweep import load_sweep, run_sweep

    tmp = Path(tempfile.mkdtemp(prefix="bench-cluster-sweep-"))
    (tmp / "sweep.yaml").write_text(yaml.safe_dump({"models": mode["models"], "protocols": mode["protocols"]}))
    cells = load_sweep(tmp / "sweep.yaml")
    base = RunOptions(model="", protocol="", data_root=mode["data_root"], store=str(tmp / "store.sqlite"),
                      cache_dir="", progress=False)
    with cl.connect(cl.parse_cluster("local:2")) as client:
        client.wait_for_workers(2)
        t0 = time.perf_counter()
        run_sweep(cells, base, client=client, progress=False)
        wall = time.perf_counter() - t0
    return {"wall_s": wall, "cells": [{"cell": c.label, "status": c.status, "seconds": c.seconds,
                                       **({"error": c.detail} if c.status == "failed" else {})} for c in cells]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", default=str(HERE.parents[1] / "shared" / "data" / "lfw"))
    ap.add_argument("--n-images", type=int, default=None, help="run on an LFW subset of about N images")
    ap.add_argument("--protocol", default="lfw-10fold")
    ap.add_argument("--scale", type=int, default=8)
    ap.add_argument("--chunk-size", type=int, default=256)
    ap.add_argument("--sweep-models", default="bicubic,nearest,hr")
    ap.add_argument("--no-sweep", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        mode = json.loads(args.child)
        print(json.dumps(sweep_one(mode) if mode["tag"] == "sweep" else run_one(mode)))
        return
    data_root = args.data_root
    if args.n_images:
        data_root = str(Path(tempfile.mkdtemp(prefix="bench-cluster-lfw-")) / "lfw")
        print(f"subset: {subset_root(Path(args.data_root), args.n_images, Path(data_root))} pair images")
    common = {"protocol": args.protocol, "scale": args.scale, "data_root": data_root, "chunk_size": args.chunk_size}
    runs = {}
    for tag, cluster, one_thread in (("single_1thread", None, True), ("single_all", None, False),
                                     ("local1", "local:1", True), ("local2", "local:2", True)):
        runs[tag] = child({**common, "tag": tag, "cluster": cluster, "one_thread": one_thread})
        print(f"{tag:>15}: {runs[tag]['run_s']:8.2f} s  ({runs[tag]['n_images'] / runs[tag]['run_s']:7.1f} img/s)"
              + (f", cluster start-up {runs[tag]['startup_s']:.1f} s" if cluster else ""))
    out = report(runs, args.chunk_size)
    if not args.no_sweep:
        sweep = child({"tag": "sweep", "data_root": data_root, "models": args.sweep_models.split(","),
                       "protocols": ["lfw-10fold", "lfw-ident"], "one_thread": True})
        out["sweep_wall_s"], out["sweep_cells"] = sweep["wall_s"], sweep["cells"]
        for c in sweep["cells"]:
            print(f"  sweep cell {c['cell']:<40} {c['status']:<8} {c['seconds']:7.1f} s {c.get('error', '')}")
        print(f"{'sweep_wall_s':>22}: {sweep['wall_s']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


def report(runs: dict, chunk_size: int) -> dict:
    """The headline figures from the four runs, printed."""
    single, n = runs["single_1thread"], runs["single_1thread"]["n_images"]
    shards = math.ceil(n / chunk_size)
    out = {"n_images": n, "shards": shards, "runs": runs,
           "speedup": single["run_s"] / runs["local2"]["run_s"],
           "local2_vs_single_all": runs["single_all"]["run_s"] / runs["local2"]["run_s"],
           "overhead_per_shard_s": (runs["local1"]["run_s"] - single["run_s"]) / shards,
           "identical": all(r["metrics"] == single["metrics"] for r in runs.values())}
    out["efficiency"] = out["speedup"] / 2
    for k in ("speedup", "efficiency", "local2_vs_single_all", "overhead_per_shard_s", "identical", "shards"):
        print(f"{k:>22}: {out[k]:.3f}" if isinstance(out[k], float) else f"{k:>22}: {out[k]}")
    return out


if __name__ == "__main__":
    main()
