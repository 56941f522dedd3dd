"""Throughput of a whole lfw-10fold run on the real LFW copy, stage by stage.

    python benchmarks/bench_lfw_10fold.py [--data-root ../shared/data/lfw] [--model bicubic]
        [--scale 8] [--evaluator sface] [--json PATH]

Caching is off (results kept in memory only), so every stage really runs: hash, read (load),
degrade, SR, image metrics, embed (HR and SR: twice the images), score. Prints each stage's
seconds and images per second (images that stage processed / its seconds) and the wall time;
``--json PATH`` writes ``wall_s``, ``images_per_s`` (end to end), ``stage_seconds``,
``stage_images_per_s``, ``n_images`` and ``accuracy``.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout, not whichever fhbench is installed

from benchmark.engine.runner import RunOptions, run  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data" / "lfw"))
    ap.add_argument("--model", default="bicubic")
    ap.add_argument("--scale", type=int, default=8)
    ap.add_argument("--evaluator", default="sface")
    ap.add_argument("--json", default=None, metavar="PATH", help="write the headline figures here")
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
    rates = m["images_per_second"]
    for stage, sec in m["timing_seconds"].items():
        rate = f"{rates[stage]:>12.1f}" if stage in rates else f"{'-':>12}"
        print(f"{stage:<15}{sec:>10.2f}{rate}")
    print(f"accuracy {res['metrics']['accuracy'] * 100:.2f} +- {res['metrics']['accuracy_std'] * 100:.2f} %")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "wall_s": wall, "images_per_s": n / wall, "stage_seconds": m["timing_seconds"],
            "stage_images_per_s": rates, "n_images": n, "accuracy": res["metrics"]["accuracy"]}, indent=2) + "\n")


if __name__ == "__main__":
    main()
