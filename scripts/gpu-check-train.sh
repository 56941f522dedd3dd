#!/usr/bin/env bash
# One-command check of the reference trainers on CUDA (issue 16). On a machine with a GPU and
# the venv built (scripts/bootstrap), or with the kit of scripts/device_kit.py unpacked and its
# env.sh sourced (a machine with its own PyTorch and no network), it
#   1. trains each trainer (srresnet, srresnet-fr, csrip, ipunet, cface; their smoke configs,
#      baselines/configs/smoke/) for 200 steps on CUDA with mixed precision: float16 autocast
#      + GradScaler, and again with bfloat16 where the GPU supports it;
#   2. checks that the loss falls (the first stage's mean logged loss over its last 20 steps
#      below that over its first 20);
#   3. evaluates a checkpoint written on the GPU through `fhbench run --device cpu` on a
#      miniature LFW root (lfw-10fold);
#   4. prints images/s per model, stage and precision beside the papers' figures (e.g. C-SRIP:
#      15 ms per image in batch mode, inference).
# Without CUDA it prints "skipped: no CUDA" and exits 0. Exit status 1 when any check fails.
# Environment: FHBENCH_GPU_CHECK_STEPS (default 200), FHBENCH_GPU_CHECK_MODELS (comma list),
# FHBENCH_GPU_CHECK_DEVICE (default cuda; "cpu" runs the same logic in float32, for debugging),
# PYTHON (default: the venv scripts/bootstrap builds).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
py=$("$repo/scripts/venv-python")
device=${FHBENCH_GPU_CHECK_DEVICE:-cuda}
if [ "$device" = cuda ] && ! "$py" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu-check-train: skipped: no CUDA (torch.cuda.is_available() is False on this machine)"
  exit 0
fi
cd "$repo"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
exec "$py" - "$device" <<'PY'
import json, os, shutil, statistics, subprocess, sys, tempfile, time
from pathlib import Path

import numpy as np
import torch
import yaml

device = sys.argv[1]
ROOT = Path.cwd()
STEPS = int(os.environ.get("FHBENCH_GPU_CHECK_STEPS", "200"))
MODELS = os.environ.get("FHBENCH_GPU_CHECK_MODELS", "srresnet,srresnet-fr,csrip,ipunet,cface").split(",")
LFW = ROOT.parent / "shared" / "data" / "lfw" / "aligned-112x96"
PAPER = {"csrip": "C-SRIP: 15 ms/image in batch mode, 30 ms single (GPU inference; 001 Sec. 4.1)",
         "srresnet": "SRResNet: no speed figure (1.5M parameters at 16 blocks)",
         "srresnet-fr": "FR-loss paper: no speed figure", "ipunet": "U-Net paper: no speed figure",
         "cface": "C-Face: no speed figure"}
from benchmark.training.trainer import TRAINABLE, trainable  # noqa: E402

failures, rows = [], []
t_start = time.time()
if device == "cuda":
    print(f"gpu-check-train: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    precisions = ["float16"] + (["bfloat16"] if torch.cuda.is_bf16_supported() else [])
else:
    print("gpu-check-train: DEBUG run on the CPU (float32; no mixed precision)")
    precisions = ["float32"]


def people(root: Path, n_people=8, per=3):
    """<identity>/<image> faces: real LFW people with >= per images, else synthetic."""
    if LFW.is_dir():
        # each person's first images, numbered 1 .. per here (a subset of LFW, such as the
        # scripts/device_kit.py one, need not hold images 1, 2, 3); the pairs below use these
        chosen = [(p.name, sorted(p.glob("*.jpg"))[:per]) for p in sorted(LFW.iterdir())]
        chosen = [(name, files) for name, files in chosen if len(files) == per][:n_people]
        for name, files in chosen:
            (root / name).mkdir(parents=True)
            for k, f in enumerate(files, 1):
                shutil.copyfile(f, root / name / f"{name}_{k:04d}.jpg")
        return [name for name, _ in chosen], "real LFW faces"
    import cv2

    rng = np.random.default_rng(0)
    names = [f"Person_{i}" for i in range(n_people)]
    for name in names:
        (root / name).mkdir(parents=True)
        base = rng.random((14, 12, 3))
        for k in range(1, per + 1):
            img = cv2.resize(np.clip(base + 0.1 * rng.random((14, 12, 3)), 0, 1), (96, 112),
                             interpolation=cv2.INTER_CUBIC)
            cv2.imwrite(str(root / name / f"{name}_{k:04d}.jpg"), (img * 255).astype(np.uint8))
    return names, "synthetic faces (../shared/data/lfw is absent)"


def config_for(name: str, precision: str) -> dict:
    raw = yaml.safe_load((ROOT / "baselines" / "configs" / "smoke" / f"{name}.yaml").read_text())
    stages = raw["stages"]
    total = sum(s["steps"] for s in stages)
    for s in stages:  # STEPS in all, in the smoke config's proportions (the first stage gets the rest)
        s["steps"] = max(1, s["steps"] * STEPS // total)
    stages[0]["steps"] += STEPS - sum(s["steps"] for s in stages)
    raw.update({"checkpoint_every": STEPS, "log_every": 1, "keep_checkpoints": 1,
                "mixed_precision": precision != "float32"})
    if precision != "float32":
        raw["amp_dtype"] = precision
    return raw


def fhbench(*args, timeout=1800):
    return subprocess.run([sys.executable, "-m", "benchmark.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    os.environ["FHBENCH_CACHE"] = str(tmp / "cache")
    names, source = people(tmp / "faces")
    print(f"training faces: {len(names)} people x 3, {source}; {STEPS} steps per trainer and precision")
    weights_for_eval = None
    for name in MODELS:
        for precision in precisions:
            cfg = tmp / f"{name}-{precision}.yaml"
            cfg.write_text(yaml.safe_dump(config_for(name, precision)))
            out = tmp / "runs" / f"{name}-{precision}"
            t0 = time.time()
            res = fhbench("train", name, "--config", cfg, "--data-root", tmp / "faces", "--out", out,
                          "--device", device)
            if res.returncode != 0:
                failures.append(f"{name} {precision}: training failed: "
                                f"{(res.stderr.strip().splitlines() or ['?'])[-1]}")
                print(f"FAIL {failures[-1]}", flush=True)
                continue
            log = [json.loads(x) for x in (out / name / "scalars.jsonl").read_text().splitlines()]
            log = [r for r in log if "loss" in r]
            first = [r["loss"] for r in log if r["stage"] == log[0]["stage"]]
            k = min(20, len(first) // 2)
            falls = k > 0 and np.mean(first[-k:]) < np.mean(first[:k])
            if not falls:
                failures.append(f"{name} {precision}: the {log[0]['stage']} loss did not fall "
                                f"({np.mean(first[:k]):.4g} -> {np.mean(first[-k:]):.4g})")
            for stage in dict.fromkeys(r["stage"] for r in log):
                rates = [r["images_per_s"] for r in log if r["stage"] == stage][1:] or \
                        [r["images_per_s"] for r in log if r["stage"] == stage]
                rows.append((name, stage, precision, statistics.median(rates)))
            print(f"{'ok  ' if falls else 'FAIL'} {name:<12} {precision:<9} {time.time() - t0:6.1f} s  "
                  f"{log[0]['stage']} loss {np.mean(first[:k]):.4g} -> {np.mean(first[-k:]):.4g}", flush=True)
            if name == "srresnet" and weights_for_eval is None:
                weights_for_eval = out / name / f"{name}-x4.pt"

    # a checkpoint written on the GPU, evaluated on the CPU through `fhbench run`
    if weights_for_eval is not None:
        lfw = tmp / "lfw"
        shutil.copytree(tmp / "faces", lfw / "aligned-112x96")
        lines = ["10\t2"]
        for fold in range(10):
            for j in range(2):
                a = names[(fold + j) % len(names)]
                lines.append(f"{a}\t1\t{2 + j}")
            for j in range(2):
                a, b = names[(fold + j) % len(names)], names[(fold + j + 3) % len(names)]
                lines.append(f"{a}\t{1 + j}\t{b}\t3")
        (lfw / "pairs.txt").write_text("\n".join(lines) + "\n")
        res = fhbench("run", "--model", "srresnet", "--weights", weights_for_eval, "--protocol", "lfw-10fold",
                      "--scale", "4", "--data-root", lfw, "--store", tmp / "r.sqlite", "--cache-dir", "",
                      "--device", "cpu", "--quiet")
        if res.returncode == 0:
            print(f"ok   a {device}-written srresnet checkpoint evaluates on the CPU (fhbench run lfw-10fold x4)")
        else:
            failures.append("fhbench run on the CPU of the GPU-written srresnet checkpoint failed: "
                            f"{(res.stderr.strip().splitlines() or ['?'])[-1]}")
            print(f"FAIL {failures[-1]}")
    elif "srresnet" in MODELS:
        failures.append("no srresnet checkpoint to evaluate")

print()
print(f"{'model':<12}{'stage':<22}{'precision':<11}{'images/s':>10}{'ms/image':>10}   paper")
for name, stage, precision, rate in rows:
    print(f"{name:<12}{stage:<22}{precision:<11}{rate:>10.1f}{1000 / rate:>10.2f}   {PAPER.get(name, '')}")
print(f"(training throughput at the smoke configs' widths and batch sizes; the papers' figures are "
      f"inference at full width)\ntotal {time.time() - t_start:.0f} s")
if failures:
    print("\n".join(["", "gpu-check-train: FAILED:"] + [f"  {f}" for f in failures]))
    sys.exit(1)
print("gpu-check-train: all checks passed")
PY
