"""Pixel and identity losses shared by the baselines (others live beside their models).

Images are (N, 3, H, W) RGB tensors in [0, 1]; each loss returns a scalar tensor.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def mse_loss(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """Mean squared error over every pixel and channel (computed in float32)."""
    return F.mse_loss(sr.float(), hr.float())


def fr_loss(identity_net, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """FR loss: the batch mean of ||phi(SR) - phi(HR)||_2 with phi = ``identity_net``
    (L2-normalised embeddings, so each distance lies in [0, 2]).

    SR and HR go through phi as ONE batch: with BatchNorm in training mode (the frozen
    network's batch statistics), both are normalised by the same statistics, so the
    distance compares like with like. phi(HR) is the target: no gradient flows into it.
    """
    n = sr.shape[0]
    emb = identity_net(torch.cat([sr, hr.to(sr.dtype)]))
    return torch.linalg.vector_norm(emb[:n] - emb[n:].detach(), dim=1).mean()
