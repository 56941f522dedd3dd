"""``fhbench train ... --nproc N``: the checks, then torchrun.

``--nproc N`` (N > 1) checks what can be checked before any process starts (N >= 1, N no
more than the GPUs, or the CPU cores on a CPU run, the global batch sizes split evenly over N),
each failure a one-line ``ConfigError``, then replaces this process by
``python -m torch.distributed.run --standalone --nproc_per_node=N -m benchmark.cli train ...``
with the same options (without ``--nproc``). ``--nproc 1`` trains in this process.
"""
from __future__ import annotations

import os
import sys
from typing import List, Optional

import torch

from benchmark.errors import ConfigError


def check_nproc(name: str, nproc: int, config_path, device: Optional[str]) -> None:
    if nproc < 1:
        raise ConfigError(f"--nproc {nproc}: the number of processes must be >= 1")
    if nproc > 1 and os.environ.get("WORLD_SIZE"):
        raise ConfigError(f"--nproc {nproc} inside a torchrun job (WORLD_SIZE={os.environ['WORLD_SIZE']}): "
                          "launch either with torchrun or with --nproc, not both")
    if nproc == 1:
        return
    from benchmark.training import checks
    from benchmark.training.config import load_config
    from benchmark.training.trainer import TRAINABLE, trainable

    trainable(name)
    config = load_config(config_path, {n: m.options for n, m in TRAINABLE.items()})
    checks.check_world(config, nproc)
    cuda = torch.device(device).type == "cuda" if device else torch.cuda.is_available()
    if cuda:
        count = torch.cuda.device_count()
        if nproc > count:
            raise ConfigError(f"--nproc {nproc}: this machine has {count} GPU(s); one process per GPU")
    else:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        if nproc > cores:
            raise ConfigError(f"--nproc {nproc}: this CPU run has {cores} core(s) available; use at most that many")


def torchrun_argv(nproc: int, train_args: List[str]) -> List[str]:
    """The torchrun command line that runs ``fhbench train <train_args>`` on ``nproc`` processes."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "benchmark.cli", "train", *train_args]


def exec_torchrun(nproc: int, train_args: List[str]) -> None:  # pragma: no cover - replaces the process
    argv = torchrun_argv(nproc, train_args)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)
