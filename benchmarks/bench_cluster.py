"""Images/s of one run with no cluster, ``--cluster local:1`` and ``--cluster local:2``.

    PYTHONPATH=$PWD python benchmarks/bench_cluster.py [--data-root DATA] [--protocol lfw-10fold]
        [--scale 8] [--limit-threads] [--json PATH]

Cache off (every image computed), bicubic, SFace. Each cluster run is checked against the
single-process run: identical stored metrics. ``--limit-threads`` pins the single process to
one torch thread (the per-worker setting), for a scaling-efficiency figure.
"""
import argparse
import json
import tempfile
import time
from pathlib import Path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--protocol", default="lfw-10fold")
    ap.add_argument("--scale", type=int, default=8)
    ap.add_argument("--chunk-size", type=int, default=256)
    ap.add_argument("--limit-threads", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import torch

    from benchmark.engine import runner

    tmp = Path(tempfile.mkdtemp(prefix="bench-cluster-"))

    def one(tag, cluster):
        opts = runner.RunOptions(model="bicubic", protocol=args.protocol, scale=args.scale, data_root=args.data_root,
                                 store=str(tmp / f"{tag}.sqlite"), cache_dir="", chunk_size=args.chunk_size,
                                 progress=False, cluster=cluster)
        t0 = time.perf_counter()
        result = runner.run(opts)
        return result, time.perf_counter() - t0

    threads = torch.get_num_threads()
    if args.limit_threads:
        torch.set_num_threads(1)
    single, t_single = one("single", None)
    torch.set_num_threads(threads)
    n = single["manifest"]["data"]["n_images"]
    out = {"n_images": n, "single_s": t_single, "single_img_s": n / t_single}
    for workers in (1, 2):
        result, seconds = one(f"local{workers}", f"local:{workers}")
        out[f"local{workers}_s"] = seconds
        out[f"local{workers}_img_s"] = n / seconds
        out[f"local{workers}_identical"] = result["metrics"] == single["metrics"]
    out["speedup"] = t_single / out["local2_s"]
    out["local2_vs_local1"] = out["local1_s"] / out["local2_s"]
    out["efficiency"] = out["speedup"] / 2
    out["identical"] = out["local1_identical"] and out["local2_identical"]
    for k, v in out.items():
        print(f"{k:>20}: {v:.3f}" if isinstance(v, float) else f"{k:>20}: {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
