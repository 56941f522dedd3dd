"""The harness on the device (issue 13) against the serial NumPy/onnxruntime path it replaces,
on the shared LFW, in one run.

    python benchmarks/bench_pipeline.py [--data-root ../shared/data/lfw] [--device cpu|cuda]
        [--limit N] [--backend onnxruntime|onnxruntime-fast|torch] [--skip-run] [--json PATH]

1. Harness overhead: images/s of all non-model stages together on ``--limit`` faces (default
   2,000): decode (+ prefetch of the next chunk on the new path), bicubic x8 degradation with
   8-bit LR, bicubic upsampling, SR output checks, PSNR+SSIM on Y, and the warp of the SR and HR
   faces to the evaluator's crop. Serial: ``HRSource.load`` + ``ImagePipeline`` (NumPy) +
   ``warp_to_template``; new: ``prefetched`` + ``TorchImagePipeline`` on ``--device`` +
   ``warp_to_template_torch``. Both go through the engine's own code.
2. The whole ``lfw-10fold`` run, bicubic x8, SFace, cache off: the serial path (harness numpy,
   no prefetch, onnxruntime) and the new one (harness torch on ``--device``, prefetch, the
   ``--backend`` given; default: torch on CUDA, onnxruntime on the CPU). ``--limit`` also cuts the
   run to the first pairs of each fold (about N images); without it the run is the full 6,000
   pairs / 7,701 images. ``model_share``: the share of the new run's wall time inside the SR and
   FR forward passes (its ``sr`` and ``embed`` stages).

The overhead is measured ``--repeat`` times per path (default 3), alternating, and the medians are
reported. ``--json PATH`` writes overhead_images_per_s, overhead_serial_images_per_s and
overhead_ratio (the medians, each run's rate beside them), wall_s_new, wall_s_serial, wall_ratio
and model_share (and the two runs' accuracy and PSNR).
On a machine shared with other work the figures are indicative only.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmark.contracts.degradation import make_degradation  # noqa: E402
from benchmark.engine.allocator import keep_large_buffers  # noqa: E402
from benchmark.engine.pipeline import HRSource, ImagePipeline, Level  # noqa: E402
from benchmark.engine.prefetch import prefetched  # noqa: E402
from benchmark.engine.runner import RunOptions, run  # noqa: E402
from benchmark.engine.torch_pipeline import TorchImagePipeline  # noqa: E402
from benchmark.engine.torch_stages import harness_threads, same_images  # noqa: E402
from benchmark.faces.frames import warp_to_template, warp_to_template_torch  # noqa: E402
from benchmark.faces.templates import ARCFACE_112x112  # noqa: E402
from benchmark.contracts.metric import metric_spec  # noqa: E402
from benchmark.contracts.model_adapters import create_model  # noqa: E402
from benchmark.datasets.lfw import write_pairs_subset  # noqa: E402

CHUNK, BATCH = 512, 32  # the runner's defaults


def faces_of(data_root: Path, limit: int):
    """The first ``limit`` aligned LFW faces of lfw-10fold as a FaceSet (the task's own reader)."""
    from benchmark.engine.protocols import load_protocol
    from benchmark.registry import TASKS

    faces = TASKS.get("pairs-10fold")(load_protocol("lfw-10fold"), str(data_root)).faces()
    return faces.subset(np.arange(min(limit, len(faces))))


def overhead(faces, device: str, serial: bool) -> float:
    """Images/s of decode + degrade + upsample + SR checks + PSNR/SSIM + warps over ``faces``."""
    import torch

    model = create_model("bicubic", scale=8)
    metrics = [metric_spec("psnr"), metric_spec("ssim")]
    source = HRSource(faces, None)
    level = Level("x8", make_degradation("bicubic", scale=8))
    chunks = [np.arange(s, min(s + CHUNK, len(faces))) for s in range(0, len(faces), CHUNK)]
    if serial:
        pipe = ImagePipeline(model, None, source.frame, 0, metrics, BATCH)
    else:
        pipe = TorchImagePipeline(model, None, source.frame, 0, metrics, BATCH, device=device)
    t0 = time.perf_counter()
    for idx, hr in prefetched(source.load, chunks, ahead=0 if serial else 1):
        names = [faces.relpaths[i] for i in idx]
        if serial:
            sr = pipe.super_resolve(pipe.model_input(level, hr), hr.shape, idx, names)
            same = np.array([np.array_equal(s, h) for s, h in zip(sr, hr)])
            pipe.image_metrics(sr, hr, same)
            for images in (sr, hr):
                warp_to_template(images, source.frame, ARCFACE_112x112)
        else:
            hr = pipe.to_device(hr)
            sr = pipe.super_resolve(pipe.model_input(level, hr), hr.shape, idx, names)
            pipe.image_metrics(sr, hr, same_images(sr, hr))
            with harness_threads(pipe.device):  # as the run's pipeline does for its own small ops
                for images in (sr, hr):
                    warp_to_template_torch(images, source.frame, ARCFACE_112x112)
            if str(device).startswith("cuda"):
                torch.cuda.synchronize()
    return len(faces) / (time.perf_counter() - t0)


def subset_root(data_root: Path, limit: int, tmp: Path) -> Path:
    """An LFW root with the first pairs of each fold (about ``limit`` images), the images linked."""
    folds, per_fold = (int(x) for x in (data_root / "pairs.txt").read_text().split()[:2])
    return write_pairs_subset(data_root, tmp / "lfw-subset", max(1, min(per_fold, limit // (4 * folds))))


def whole_run(data_root: Path, tmp: Path, tag: str, **kw) -> tuple:
    opts = RunOptions(model="bicubic", protocol="lfw-10fold", scale=8, evaluator="sface", data_root=str(data_root),
                      store=str(tmp / f"{tag}.sqlite"), cache_dir="", **kw)
    t0 = time.perf_counter()
    result = run(opts)
    return time.perf_counter() - t0, result


def report_run(label: str, wall: float, result: dict) -> None:
    m, man = result["metrics"], result["manifest"]
    print(f"  {label:<44} wall {wall:8.1f} s   accuracy {m['accuracy'] * 100:.2f} +- {m['accuracy_std'] * 100:.2f}"
          f"   PSNR {m['psnr']:.2f}   SSIM {m['ssim']:.4f}   FR loss {m['fr_loss']:.4f}")
    stages = ", ".join(f"{k} {v:.0f}" for k, v in man["images_per_second"].items())
    print(f"  {'':<44} images/s per stage: {stages}")


def main():
    keep_large_buffers()  # what `fhbench` does at start (FHBENCH_MALLOC=default: glibc's own settings)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data" / "lfw"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--limit", type=int, default=None, help="faces for the overhead (default 2000); also cuts the run")
    ap.add_argument("--backend", default=None, help="the new run's evaluator backend (default: torch on CUDA, "
                                                    "onnxruntime on the CPU)")
    ap.add_argument("--skip-run", action="store_true", help="measure the overhead only")
    ap.add_argument("--repeat", type=int, default=3,
                    help="overhead measurements of each path, alternated; the medians are reported (default 3)")
    ap.add_argument("--json", default=None, metavar="PATH")
    args = ap.parse_args()
    data_root = Path(args.data_root)
    if not (data_root / "pairs.txt").is_file():
        sys.exit(f"bench_pipeline: no LFW at {data_root} (pairs.txt and aligned-112x96 needed)")
    backend = args.backend or ("torch" if args.device.startswith("cuda") else "onnxruntime")
    faces = faces_of(data_root, args.limit or 2000)
    print(f"harness overhead on {len(faces)} LFW faces 112x96 (decode, bicubic x8 + 8-bit LR, upsample, "
          f"SR checks, PSNR+SSIM on Y, warp SR and HR to the SFace crop):")
    # alternated, so that a slow spell of a shared machine falls on both paths
    serials, news = [], []
    for _ in range(max(1, args.repeat)):
        serials.append(overhead(faces, "cpu", serial=True))
        news.append(overhead(faces, args.device, serial=False))
    serial, new = float(np.median(serials)), float(np.median(news))
    spread = lambda rates: f"(median of {len(rates)}: {min(rates):.0f}-{max(rates):.0f})"  # noqa: E731
    print(f"  serial NumPy path        {serial:8.0f} images/s   {spread(serials)}\n"
          f"  torch on {args.device:<15} {new:8.0f} images/s   {spread(news)}   ({new / serial:.2f}x)")
    out = {"device": args.device, "n_overhead_images": len(faces), "overhead_images_per_s": new,
           "overhead_serial_images_per_s": serial, "overhead_ratio": new / serial,
           "overhead_runs_images_per_s": news, "overhead_serial_runs_images_per_s": serials}
    if not args.skip_run:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            root = subset_root(data_root, args.limit, tmp) if args.limit else data_root
            print(f"lfw-10fold bicubic x8, SFace, cache off ({'subset of ' + root.name if args.limit else 'full'}):")
            wall_serial, ref = whole_run(root, tmp, "serial", harness="numpy", prefetch=0, backend="onnxruntime")
            report_run("serial (NumPy harness, onnxruntime, no prefetch)", wall_serial, ref)
            wall_new, got = whole_run(root, tmp, "new", harness="torch", prefetch=1, backend=backend,
                                      device=args.device)
            report_run(f"new (torch harness on {args.device}, {backend}, prefetch)", wall_new, got)
        seconds = got["manifest"]["timing_seconds"]
        share = (seconds.get("sr", 0.0) + seconds.get("embed", 0.0)) / wall_new
        print(f"  whole run {wall_serial / wall_new:.2f}x the serial path; {share * 100:.0f} % of the new run's "
              f"wall time in the SR and FR forward passes (n = {got['manifest']['data']['n_images']} images)")
        out.update({"wall_s_new": wall_new, "wall_s_serial": wall_serial, "wall_ratio": wall_serial / wall_new,
                    "model_share": share, "n_run_images": got["manifest"]["data"]["n_images"], "backend": backend,
                    "accuracy_new": got["metrics"]["accuracy"], "accuracy_serial": ref["metrics"]["accuracy"],
                    "psnr_new": got["metrics"]["psnr"], "psnr_serial": ref["metrics"]["psnr"]})
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
