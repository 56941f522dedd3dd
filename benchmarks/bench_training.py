"""Training throughput of each reference trainer on this machine's CPU, with parameters and
FLOPs per image, beside the figures the papers give.

    python benchmarks/bench_training.py [--models srresnet,srresnet-fr,csrip,ipunet,cface]
        [--batch-size 8] [--steps 2] [--faces 16] [--device cpu] [--json PATH]

For every stage of each model's paper config (baselines/configs/NAME.yaml: its architecture,
HR size, scale and identity network) the real training loop (``benchmark.training.trainer.train``)
runs 1 warm-up step + ``--steps`` measured steps at ``--batch-size`` on ``--faces`` real LFW
faces (../shared/data/lfw/aligned-112x96, 8 people; smooth synthetic faces when absent).
Throughput is the median of the loop's own images/s over the measured steps (data loading,
forward, backward and optimiser steps; no checkpoint inside the window).

FLOPs (``torch.utils.flop_counter.FlopCounterMode``, which counts matrix products and
convolutions, forward and backward; 1 multiply-add = 2 FLOPs):
  inference   one image through the SR network the adapter runs, at the config's input size;
  train       one training step of that stage (every network involved, backward included)
              divided by the batch size; the stage's set-up (e.g. C-Face's compare faces) is
              measured alone and subtracted.
Parameters: those the inference forward touches. Inference speed: the SR network in eval mode
without gradients on a batch of ``--batch-size`` random inputs, median of 3 after 1 warm-up
(the papers' speed figures are inference speeds, mostly on GPUs).
C-Face's VGG19 is randomly initialised when torchvision's ImageNet file is absent (same FLOPs;
printed). A model that is not registered (yet) is skipped with the reason.

Data-parallel scaling (``--ddp N``): instead of the table above, each stage trains twice at the
same GLOBAL batch ``--batch-size``: as one process (``python -m benchmark.cli train``) and as N
processes (``torchrun --standalone --nproc_per_node=N -m benchmark.cli train``: gloo on the CPU,
nccl on CUDA), both in fresh subprocesses with
``--threads`` OMP threads per process (default 1, torchrun's own default: N processes then use
N cores where 1 process uses one; a 1-process run with all cores under load is a different
question); images/s is the median of the logged global images/s over the measured
steps. Printed: both rates, their ratio (N processes / 1) and the scaling efficiency
(ratio / N). ``--smoke`` uses baselines/configs/smoke/NAME.yaml (small widths: seconds per
stage on a CPU) instead of the paper configs.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmark.training.trainer import TRAINABLE, trainable, train
from benchmark.errors import FhbenchError, UnknownNameError  # noqa: E402
from benchmark.registry import MODELS  # noqa: E402

LFW_ALIGNED = ROOT.parent / "shared" / "data" / "lfw" / "aligned-112x96"
PEOPLE = ["Tony_Blair", "Vladimir_Putin", "Serena_Williams", "John_Ashcroft", "Colin_Powell", "George_W_Bush",
          "Gerhard_Schroeder", "Donald_Rumsfeld"]
ORDER = ["srresnet", "srresnet-fr", "csrip", "ipunet", "cface"]
# What each paper says about size or speed, and where; "not given" where the sources at hand say nothing.
PAPER_FIGURES = {
    "srresnet": "SRResNet-16 (4x): 1.5M parameters [EDSR paper (Lim et al. 2017), Table 1]; "
                "the 10-block face model: not given",
    "srresnet-fr": "as srresnet; FR fine-tuning cost: not given",
    "csrip": "24x24 -> 192x192 in 15 ms per image in batch mode on a GPU (inference) [Grm et al., 'Face "
             "hallucination using cascaded super-resolution and identity priors', IEEE TIP 2020, as issue 3 "
             "and ../shared/DESIGN.md quote it]; parameters: not given",
    "ipunet": "not given (none in the authors' README or train.py; the paper was not at hand)",
    "cface": "not given for C-Face; its SRGAN generator: 1.5M parameters at 4x [EDSR paper, Table 1]",
}


def make_faces(root: Path, n: int) -> str:
    root.mkdir(parents=True)
    per = max(2, -(-n // len(PEOPLE)))
    if LFW_ALIGNED.is_dir():
        made = 0
        for k in range(1, per + 1):
            for name in PEOPLE:
                src = LFW_ALIGNED / name / f"{name}_{k:04d}.jpg"
                if made < n and src.is_file():
                    (root / name).mkdir(exist_ok=True)
                    shutil.copyfile(src, root / name / src.name)
                    made += 1
        return f"{made} real LFW faces ({LFW_ALIGNED})"
    import cv2

    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / f"Person_{i % 8}"
        folder.mkdir(exist_ok=True)
        img = cv2.resize(rng.random((14, 12, 3)), (96, 112), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(folder / f"img_{i:04d}.png"), np.clip(img * 255, 0, 255).astype(np.uint8))
    return f"{n} smooth synthetic faces (../shared/data is absent)"


def stage_config(raw: dict, stage: dict, batch: int, steps: int, notes: list) -> dict:
    raw = json.loads(json.dumps(raw))
    stage = dict(stage)
    # a fixed number of steps at the benchmark's batch: no epochs, per-stage batch or early stop
    for key in ("epochs", "batch_size", "early_stopping"):
        stage.pop(key, None)
    stage["steps"] = steps
    raw.pop("validation", None)  # no faces held out: every face trains
    raw.update({"stages": [stage], "batch_size": batch, "log_every": 1, "checkpoint_every": 10 ** 9,
                "keep_checkpoints": 1, "init_weights": None})
    raw["data"]["workers"] = 0
    if raw["model"]["name"] == "cface":
        from baselines.cface import CFaceOptions, vgg19_weights_path

        options = CFaceOptions(**{k: v for k, v in raw["model"].items() if k in CFaceOptions.__dataclass_fields__})
        if options.perceptual_weights != "random-init" and not vgg19_weights_path(options).is_file():
            raw["model"]["perceptual_weights"] = "random-init"
            note = f"cface: VGG19 randomly initialised ({vgg19_weights_path(options)} is absent; same FLOPs)"
            if note not in notes:
                notes.append(note)
    return raw


def inference_cost(name: str, raw: dict, batch: int, device):
    """(parameters the inference forward touches, its FLOPs per image, input size, images/s)."""
    spec = trainable(name)
    from benchmark.training.config import parse_config

    config = parse_config(raw, Path(f"{name}.yaml"), {n: m.options for n, m in TRAINABLE.items()})
    model = spec.build(config.model_options, config.data.scale).eval().to(device)
    h, w = config.data.hr_size
    upsampled = getattr(MODELS.get(name), "wants_upsampled_input", False)
    size = (h, w) if upsampled else (h // config.data.scale, w // config.data.scale)
    touched = {}

    def hook(module, args, out):
        for p in module.parameters(recurse=False):
            touched[id(p)] = p.numel()

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(torch.rand(1, 3, *size, device=device))
    for handle in handles:
        handle.remove()
    x = torch.rand(batch, 3, *size, device=device)
    times = []
    with torch.no_grad():
        for _ in range(4):
            t0 = time.perf_counter()
            model(x)
            if x.is_cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    return sum(touched.values()), fc.get_total_flops(), size, batch / statistics.median(times[1:])


def run_stage(name, raw, faces, work: Path, device, warmup: int, steps: int, batch: int):
    """(images/s over the measured steps, training FLOPs per image, trainable parameters)."""
    cfg = work / "config.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    t0 = time.perf_counter()
    result = train(name, cfg, faces, work / "time", device=device)
    wall = time.perf_counter() - t0
    rows = [json.loads(ln) for ln in result.log.read_text().splitlines()]
    rates = [r["images_per_s"] for r in rows if "loss" in r][warmup:]
    with FlopCounterMode(display=False) as setup:
        train(name, cfg, faces, work / "setup", device=device, max_steps=0)
    with FlopCounterMode(display=False) as one:
        train(name, cfg, faces, work / "flops", device=device, max_steps=1)
    flops = (one.get_total_flops() - setup.get_total_flops()) / batch
    return statistics.median(rates), flops, wall


def subprocess_rate(name, raw, faces, work: Path, device, warmup: int, nproc: int, threads: int = 1) -> float:
    """Median logged images/s (global) of one training run in a fresh process group of ``nproc``."""
    import subprocess

    work.mkdir(parents=True, exist_ok=True)
    cfg = work / f"config-{nproc}.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    out = work / f"run-{nproc}"
    args = ["train", name, "--config", str(cfg), "--data-root", str(faces), "--out", str(out), "--device", device]
    if nproc == 1:
        cmd = [sys.executable, "-m", "benchmark.cli", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "benchmark.cli", *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": str(threads)}
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        tail = (res.stderr.strip().splitlines() or ["?"])[-1]
        raise FhbenchError(f"{nproc} process(es) failed: {tail}")
    rows = [json.loads(ln) for ln in (out / name / "scalars.jsonl").read_text().splitlines()]
    return statistics.median([r["images_per_s"] for r in rows if "loss" in r][warmup:])


def ddp_table(args, models, tmp: Path, notes: list):
    """1 process against ``args.ddp`` processes at the same global batch, every stage."""
    n = args.ddp
    rows = []
    folder = ROOT / "baselines" / "configs" / ("smoke" if args.smoke else "")
    for name in models:
        path = folder / f"{name}.yaml"
        if not path.is_file():
            print(f"SKIP {name}: no config {path}")
            continue
        raw = yaml.safe_load(path.read_text())
        for i, stage in enumerate(raw["stages"]):
            cfg = stage_config(raw, stage, args.batch_size, 1 + args.steps, notes)
            work = tmp / "ddp" / name / f"{i}-{stage['name']}"
            try:
                one = subprocess_rate(name, cfg, tmp / "faces", work, args.device, 1, 1, args.threads)
                many = subprocess_rate(name, cfg, tmp / "faces", work, args.device, 1, n, args.threads)
            except FhbenchError as err:
                print(f"SKIP {name} stage {stage['name']}: {err}")
                continue
            rows.append((name, stage["name"], one, many))
            print(f"  {name:<12} {stage['name']:<20} 1 process {one:8.2f} images/s   {n} processes {many:8.2f} "
                  f"images/s   ratio {many / one:5.2f}", flush=True)
    print()
    print(f"global batch {args.batch_size}, {'smoke' if args.smoke else 'paper'} configs, device {args.device}, "
          f"{args.steps} measured steps after 1 warm-up, {args.threads} thread(s) per process")
    print(f"{'model':<12}{'stage':<22}{'1 proc img/s':>14}{f'{n} procs img/s':>16}{'ratio':>8}{'efficiency':>12}")
    for name, stage, one, many in rows:
        print(f"{name:<12}{stage:<22}{one:>14.2f}{many:>16.2f}{many / one:>8.2f}{many / one / n:>11.0%}")
    return rows


def fmt_g(flops: float) -> str:
    return f"{flops / 1e9:.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(ORDER))
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--steps", type=int, default=2, help="measured steps per stage (after 1 warm-up step)")
    ap.add_argument("--faces", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--ddp", type=int, default=0, metavar="N",
                    help="compare 1 process with N data-parallel processes (torchrun) at the same global batch")
    ap.add_argument("--smoke", action="store_true", help="the smoke configs instead of the paper configs")
    ap.add_argument("--json", default=None, metavar="PATH",
                    help="write the table's rows here (per model and stage: images/s, and FLOPs or the --ddp ratio)")
    ap.add_argument("--threads", type=int, default=1,
                    help="--ddp: OMP threads per process, the same for 1 and N processes (torchrun's default: 1)")
    args = ap.parse_args()
    if args.ddp and (args.ddp < 2 or args.batch_size % args.ddp):
        ap.error(f"--ddp {args.ddp}: needs N >= 2 dividing --batch-size {args.batch_size}")
    print(f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
    notes, rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["FHBENCH_CACHE"] = str(tmp / "cache")  # C-Face's compare faces: not the user's cache
        print(f"training faces: {make_faces(tmp / 'faces', args.faces)}; batch size {args.batch_size}, "
              f"1 warm-up + {args.steps} measured steps per stage")
        models = [m.strip() for m in args.models.split(",") if m.strip()]
        if args.ddp:
            ddp_rows = ddp_table(args, models, tmp, notes)
            for note in notes:
                print(f"note: {note}")
            write_json(args.json, [{"model": name, "stage": stage, "images_per_s_1": one,
                                    f"images_per_s_{args.ddp}": many, "ratio": many / one}
                                   for name, stage, one, many in ddp_rows])
            return
        for name in models:
            try:
                trainable(name)
            except UnknownNameError:
                print(f"SKIP {name}: not a registered trainable model yet (no baselines module registers it)")
                continue
            path = ROOT / "baselines" / "configs" / f"{name}.yaml"
            if not path.is_file():
                print(f"SKIP {name}: no paper config {path}")
                continue
            raw = yaml.safe_load(path.read_text())
            try:
                params, inf_flops, size, inf_rate = inference_cost(
                    name, stage_config(raw, raw["stages"][0], 1, 1, notes), args.batch_size, args.device)
                print(f"  {name:<12} {'inference':<12} {inf_rate:7.2f} images/s  {fmt_g(inf_flops)} GFLOPs/image",
                      flush=True)
            except FhbenchError as err:
                print(f"SKIP {name}: {err}")
                continue
            for i, stage in enumerate(raw["stages"]):
                work = tmp / name / f"{i}-{stage['name']}"
                work.mkdir(parents=True)
                cfg = stage_config(raw, stage, args.batch_size, 1 + args.steps, notes)
                try:
                    rate, train_flops, wall = run_stage(name, cfg, tmp / "faces", work, args.device, 1, args.steps,
                                                        args.batch_size)
                except FhbenchError as err:
                    print(f"SKIP {name} stage {stage['name']}: {err}")
                    continue
                rows.append((name, stage["name"], params, inf_flops, size, inf_rate, train_flops, rate))
                print(f"  {name:<12} {stage['name']:<12} {rate:7.2f} images/s  train {fmt_g(train_flops)} "
                      f"GFLOPs/image  ({wall:.0f} s)", flush=True)
    print()
    training = f"---- training (batch {args.batch_size}) ----"
    print(f"{'':<45}{'--- inference ---':>27}{training:>36}")
    print(f"{'model':<12}{'stage':<13}{'SR params':>11}{'input':>9}{'GFLOPs/img':>12}{'ms/img':>15}"
          f"{'GFLOPs/img':>12}{'images/s':>12}{'ms/img':>12}")
    for name, stage, params, inf, size, inf_rate, tr, rate in rows:
        print(f"{name:<12}{stage:<13}{params / 1e6:>10.2f}M{size[0]:>5}x{size[1]:<3}{fmt_g(inf):>12}"
              f"{1000 / inf_rate:>15.1f}{fmt_g(tr):>12}{rate:>12.2f}{1000 / rate:>12.0f}")
    print()
    print("paper figures (source):")
    for name in dict.fromkeys(r[0] for r in rows):
        print(f"  {name:<12} {PAPER_FIGURES.get(name, 'not given')}")
        own = TRAINABLE[name].paper
        if own:
            print(f"  {'':<12} (the module's note: {own})")
    for note in notes:
        print(f"note: {note}")
    write_json(args.json, [{"model": name, "stage": stage, "sr_params": params, "input_size": list(size),
                            "inference_gflops_per_image": inf / 1e9, "inference_images_per_s": inf_rate,
                            "train_gflops_per_image": tr / 1e9, "train_images_per_s": rate}
                           for name, stage, params, inf, size, inf_rate, tr, rate in rows])


def write_json(path, rows) -> None:
    if path:
        Path(path).write_text(json.dumps({"rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
