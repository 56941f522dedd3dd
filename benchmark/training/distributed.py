"""Data-parallel training over processes (torch.distributed): what the trainer needs of it.

Design notes: docs/TRAINING.md, section `benchmark/training/distributed.py`.
"""
from __future__ import annotations

import datetime
import os
import warnings
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional

import torch
import torch.distributed as dist
from torch import nn

from benchmark.errors import ConfigError

DEFAULT_TIMEOUT_S = 300  # rendezvous and collective timeout ($FHBENCH_DIST_TIMEOUT overrides)


def _env_int(name: str) -> Optional[int]:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"${name} is {value!r}, not an integer (torchrun sets it)") from None


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: Optional[str] = None
    joined_here: bool = False  # from_env joined the process group (so ``leave`` ends it)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: Optional[str] = None) -> "Dist":
        """The process group torchrun describes (joined here when not yet), or a single process."""
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK") or 0, dist.get_backend())
        world = _env_int("WORLD_SIZE")
        if world is None or world <= 1:
            return cls()
        rank, local = _env_int("RANK"), _env_int("LOCAL_RANK")
        if rank is None:
            raise ConfigError("$WORLD_SIZE is set but $RANK is not: launch with torchrun (or fhbench train --nproc)")
        local = rank if local is None else local
        cuda = _wants_cuda(device)
        backend = os.environ.get("FHBENCH_DIST_BACKEND") or ("nccl" if cuda else "gloo")
        if cuda:
            if local >= torch.cuda.device_count():
                raise ConfigError(f"local rank {local} has no GPU: this node has {torch.cuda.device_count()} "
                                  f"(lower --nproc_per_node / --nproc)")
            torch.cuda.set_device(local)
        timeout = _env_int("FHBENCH_DIST_TIMEOUT") or DEFAULT_TIMEOUT_S
        try:
            dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout))
        except Exception as err:  # a rendezvous that never completes, a bad address, ...
            where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(f"rank {rank} of {world} could not join the process group at {where} within "
                              f"{timeout} s ({backend}): {first}") from None
        return cls(rank, world, local, backend, joined_here=True)

    def leave(self) -> None:
        """End the process group this process joined, once every rank is done with it: a group
        left to interpreter shutdown can abort there in gloo's threads (pytorch/pytorch#179291).
        A group the caller set up is the caller's to end."""
        if self.joined_here and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
            self.joined_here = False

    def device(self, requested: Optional[str]) -> torch.device:
        if requested is None:
            requested = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(requested)
        if self.enabled and device.type == "cuda":
            if device.index is not None and device.index != self.local_rank:
                raise ConfigError(f"--device {requested} under torchrun: each rank uses the GPU of its local "
                                  f"rank (cuda:{self.local_rank}); pass --device cuda")
            return torch.device("cuda", self.local_rank)
        return device

    @property
    def comm_device(self) -> torch.device:
        """Where tensors of small collectives live: the rank's GPU with nccl (which cannot
        reduce CPU tensors), else the CPU."""
        if self.backend == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    # -- collectives (no-ops in a single process) --
    def barrier(self):
        if self.enabled:
            dist.barrier()

    def broadcast_module(self, module: nn.Module, buffers_only: bool = False):
        """Rank 0's parameters (unless ``buffers_only``) and buffers on every rank."""
        if not self.enabled:
            return
        with torch.no_grad():
            tensors = list(module.buffers()) if buffers_only else [*module.parameters(), *module.buffers()]
            for t in tensors:
                dist.broadcast(t.data, 0)

    def all_reduce_gradients(self, params: List[torch.Tensor]):
        """Average each parameter's ``.grad`` over the ranks (one flat bucket per dtype). A
        parameter without a gradient on every rank keeps none (the optimiser skips it, as in a
        single process); one with a gradient on some ranks only gets zeros on the others."""
        if not self.enabled:
            return
        with torch.no_grad():
            has = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=self.comm_device)
            dist.all_reduce(has, op=dist.ReduceOp.MAX)
            params = [p for p, h in zip(params, has.cpu().tolist()) if h]
            for p in params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            by_dtype: Dict[torch.dtype, List[torch.Tensor]] = {}
            for p in params:
                by_dtype.setdefault(p.grad.dtype, []).append(p.grad)
            for grads in by_dtype.values():
                flat = torch.cat([g.reshape(-1) for g in grads])
                dist.all_reduce(flat)
                flat /= self.world_size
                offset = 0
                for g in grads:
                    g.copy_(flat[offset:offset + g.numel()].view_as(g))
                    offset += g.numel()

    def mean_terms(self, terms: Dict[str, float]) -> Dict[str, float]:
        """Each value averaged over the ranks (the same keys on every rank)."""
        if not self.enabled:
            return dict(terms)
        keys = sorted(terms)
        t = torch.tensor([float(terms[k]) for k in keys], dtype=torch.float64, device=self.comm_device)
        dist.all_reduce(t)
        return {k: float(v) / self.world_size for k, v in zip(keys, t.cpu().tolist())}

    def sum_int(self, value: int) -> int:
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.int64, device=self.comm_device)
        dist.all_reduce(t)
        return int(t.item())

    def gather_objects(self, obj) -> list:
        """Every rank's ``obj``, in rank order (on every rank)."""
        if not self.enabled:
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out


def requested_world_size() -> int:
    """The number of processes of this run: the joined group's, else $WORLD_SIZE, else 1."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return max(1, _env_int("WORLD_SIZE") or 1)


def _wants_cuda(device: Optional[str]) -> bool:
    if device is not None:
        return torch.device(device).type == "cuda"
    return torch.cuda.is_available()


def check_world(world_size: int, batch_sizes: Iterable[int], source) -> None:
    """Every global batch must split evenly over the ranks (before the first step)."""
    for key, size in batch_sizes:
        if size < world_size:
            raise ConfigError(f"{source}: {key}: a batch of {size} cannot be shared by {world_size} processes "
                              f"(each needs at least one face): lower --nproc or raise {key}")
        if size % world_size:
            raise ConfigError(f"{source}: {key}: a batch of {size} does not split evenly over {world_size} "
                              f"processes: use a multiple of {world_size}")


class RankShare(torch.utils.data.Sampler):
    """The rank's positions [r B/N, (r+1) B/N) of each global batch of ``batches``."""

    def __init__(self, batches, rank: int, world_size: int):
        self.batches, self.rank, self.world = batches, rank, world_size

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        for batch in self.batches:
            share = len(batch) // self.world
            yield batch[self.rank * share:(self.rank + 1) * share]


# --- SyncBatchNorm that also runs on the CPU ------------------------------------------

class SyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training-mode statistics are those of the global batch (all ranks):
    the per-channel mean, then the biased variance about it, each summed over the ranks with
    the differentiable ``torch.distributed.nn.functional.all_reduce`` (so the backward pass
    sees the global batch too). Running statistics are updated with the unbiased global
    variance, as ``nn.BatchNorm2d`` does with the same batch. In eval mode, outside a process
    group, or in a world of one it is plain BatchNorm. Works with gloo (CPU) and nccl."""

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-d input, got {x.dim()}-d")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        use_batch = self.training or not self.track_running_stats
        if not (use_batch and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        with warnings.catch_warnings():  # deprecated in favour of a private module; this one is differentiable
            warnings.filterwarnings("ignore", "torch.distributed.nn.functional.all_reduce is deprecated")
            return self._global_batch_norm(x)

    def _global_batch_norm(self, x: torch.Tensor) -> torch.Tensor:
        from torch.distributed.nn.functional import all_reduce

        dims = [0] + list(range(2, x.dim()))
        xf = x.float()
        count = torch.tensor([x.numel() // x.shape[1]], dtype=torch.float32, device=x.device)
        total = all_reduce(torch.cat([xf.sum(dims), count]))
        n = total[-1]
        mean = total[:-1] / n
        shape = [1, -1] + [1] * (x.dim() - 2)
        centred = xf - mean.view(shape)
        var = all_reduce((centred * centred).sum(dims)) / n
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.training and self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = (1.0 / float(self.num_batches_tracked)) if self.momentum is None else self.momentum
                unbiased = var * n / (n - 1).clamp_min(1)
                self.running_mean.mul_(1 - momentum).add_(momentum * mean.to(self.running_mean.dtype))
                self.running_var.mul_(1 - momentum).add_(momentum * unbiased.to(self.running_var.dtype))
        return out.to(x.dtype)


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Every BatchNorm1d/2d/3d under ``module`` replaced (in place, same weights, buffers and
    training flag) by ``SyncBatchNorm``; returns ``module`` (or its replacement)."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, SyncBatchNorm):
        new = SyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                            module.track_running_stats, device=_device_of(module))
        new.load_state_dict(module.state_dict())
        if module.affine:
            new.weight.requires_grad_(module.weight.requires_grad)
            new.bias.requires_grad_(module.bias.requires_grad)
        new.training = module.training
        return new
    for name, child in list(module.named_children()):
        converted = convert_sync_batchnorm(child)
        if converted is not child:
            setattr(module, name, converted)
    return module


def _device_of(module: nn.Module):
    for t in (*module.parameters(), *module.buffers()):
        return t.device
    return None
