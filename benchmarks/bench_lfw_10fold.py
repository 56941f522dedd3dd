"""Throughput of a whole lfw-10fold run on the real LFW copy, stage by stage.

    python benchmarks/bench_lfw_10fold.py [--data-root ../shared/data/lfw] [--model bicubic]
        [--scale 8] [--evaluator sface] [--limit-pairs N]

Caching is off, so every stage really runs: read (load), degrade, SR, image metrics,
embed (SR and HR), score. Prints images per second for each stage and the wall time.
"""
import argparse
import tempfile
import time
from pathlib import Path

from benchmark.runner import RunOptions, run

ROOT = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data" / "lfw"))
    ap.add_argument("--model", default="bicubic")
    ap.add_argument("--scale", type=int, default=8)
    ap.add_argument("--evaluator", default="sface")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = run(RunOptions(model=args.model, protocol="lfw-10fold", scale=args.scale,
                             evaluator=args.evaluator, data_root=args.data_root,
                             store=str(Path(tmp) / "bench.sqlite"), cache_dir=""))
        wall = time.perf_counter() - t0
    m = res["manifest"]
    n = m["data"]["n_images"]
    print(f"lfw-10fold, model {args.model} x{res['scale']}, evaluator {args.evaluator}: "
          f"{n} images, 6,000 pairs, wall {wall:.1f} s ({n / wall:.1f} images/s end to end)")
    print(f"{'stage':<15}{'seconds':>10}{'images/s':>12}")
    for stage, sec in m["timing_seconds"].items():
        # 'embed' embeds every image twice (SR and HR), the rate counts images of the set.
        print(f"{stage:<15}{sec:>10.2f}{n / sec if sec else float('inf'):>12.1f}")
    print(f"accuracy {res['metrics']['accuracy'] * 100:.2f} +- {res['metrics']['accuracy_std'] * 100:.2f} %")


if __name__ == "__main__":
    main()
