"""Training checkpoints and weights files: what they hold, how they are written and read.

``out_dir/<model>/checkpoint-<step>.pt`` every ``checkpoint_every`` steps and ``last.pt``,
both written atomically (tmp file + os.replace), by rank 0 only under torch.distributed:
model, optimiser and scaler state, stage index and step, resolved loss weights, the RNG
state of every rank, the config, the architecture and scale, and ``world_size``: the
number of processes that trained up to it (1 for a single process). The optimiser states
are full (every rank holds the same), so a checkpoint resumes under any world size; the
global batch of a step does not depend on it either. The final weights
``<model>-x<scale>.pt`` hold the same body without the training state.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Optional

import torch

from benchmark.errors import AdapterError
from benchmark.training.config import make_data_degradation

CHECKPOINT_FORMAT = "fhbench-baseline/1"


def read_checkpoint(path, architecture: str, scale: Optional[int] = None, error=AdapterError) -> dict:
    """A weights file or training checkpoint of ``architecture`` (at ``scale`` when given);
    anything else raises ``error`` naming what the file holds and what was expected."""
    path = Path(path)
    if not path.is_file():
        raise error(f"weights file {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise error(f"{path} is not a readable torch checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise error(f"{path} is not an fhbench baseline checkpoint (written by benchmark.training.trainer)")
    want = f"{architecture} x{scale}" if scale else architecture
    if ckpt["architecture"] != architecture or (scale and ckpt["scale"] != scale):
        raise error(f"{path} holds a {ckpt['architecture']} x{ckpt['scale']} model "
                    f"(trained as {ckpt['model']}), not the {want} model asked for")
    return ckpt


def checkpoint_body(run, step: int, complete=None) -> dict:
    """What a weights file holds (``run`` is the trainer's run: spec, config, model, data)."""
    config = run.config
    return {"format": CHECKPOINT_FORMAT, "model": run.spec.name, "architecture": run.spec.architecture,
            "scale": run.scale, "model_options": dataclasses.asdict(config.model_options),
            "model_state": {k: v.detach().cpu() for k, v in run.model.state_dict().items()},
            "step": step, "complete": complete, "world_size": run.dist.world_size,
            "data": {"hr_size": list(config.data.hr_size), "frame": run.data.frame.name,
                     "degradation": make_data_degradation(config.data).spec()},
            "identity_network": run.identity.describe() if run.identity is not None else None,
            "config": config.to_dict()}


def save_checkpoint(run, stage_index: int, stage_step: int, step: int, stage_state: dict) -> None:
    """checkpoint-<step>.pt and last.pt (rank 0 writes; every rank takes part: RNG states are
    gathered, and the others wait until the files are in place)."""
    rngs = run.dist.gather_objects(rng_state())
    if run.dist.is_main:
        body = checkpoint_body(run, step)
        body.update({"stage_index": stage_index, "stage_step": stage_step, "stage_state": stage_state,
                     "optimizers": {k: o.state_dict() for k, o in run.optimisers.items()}
                     if stage_index < len(run.config.stages) else {},
                     "scaler": run.scaler.state_dict(), "rng": rngs[0], "rng_ranks": rngs[1:]})
        numbered = run.dir / f"checkpoint-{step}.pt"
        atomic_save(body, numbered)
        tmp = run.last.with_name(run.last.name + ".tmp")
        shutil.copyfile(numbered, tmp)
        os.replace(tmp, run.last)
        keep = run.config.keep_checkpoints
        if keep:
            old = sorted(run.dir.glob("checkpoint-*.pt"), key=lambda p: int(p.stem.split("-")[1]))
            for p in old[:-keep]:
                p.unlink()
    run.dist.barrier()


def save_weights(run, step: int, complete: bool) -> Path:
    weights = run.dir / f"{run.spec.name}-x{run.scale}.pt"
    if run.dist.is_main:
        atomic_save(checkpoint_body(run, step, complete), weights)
    run.dist.barrier()
    return weights


def atomic_save(obj, path: Path):
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def restore_rng(ckpt: dict, rank: int, seed: int) -> None:
    """Rank r takes the RNG state rank r saved; a rank the checkpoint's world did not have
    (resuming with more processes) starts its own stream from (seed, step, rank)."""
    states = [ckpt["rng"], *ckpt.get("rng_ranks", [])]
    if rank < len(states):
        state = states[rank]
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
    else:
        torch.manual_seed(rank_seed(seed, rank, ckpt["step"]))


def rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """The torch seed of rank r > 0 (rank 0 keeps the config's seed, as a single process does)."""
    return (seed * 1_000_003 + rank * 7919 + step * 104_729) % (2 ** 63)
