"""One process per GPU under ``torchrun``: joining the process group, and what ranks exchange (loss scalars,
weight checksums, the time-limit decision).

Every rank reads every scene. Each step's global batch (``batch_scenes * world_size`` context windows) is drawn
from one generator seeded by ``(seed, step)`` and split by rank (:func:`split_by_rank`: equal counts, balanced
numbers of views), so it does not depend on the number of ranks: DDP averages the gradients of the ranks'
per-rank means, which is the mean over the global batch, and an N-rank run with ``--batch-scenes B`` follows a
one-process run with ``--batch-scenes N*B`` (up to floating-point summation order). Logged losses are averaged
over ranks; only rank 0 writes files and logs.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class DistInfo:
    """This process's place in the (possibly single-process) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str) -> DistInfo:
    """Join the ``torchrun`` process group when there is one (NCCL on CUDA, gloo on CPU)."""
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda but CUDA is not available")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return DistInfo(rank, world, local, dev)


def finish_distributed(info: DistInfo) -> None:
    """Wait for every rank, then leave the process group (no-op in a one-process run)."""
    if info.world_size > 1:
        dist.barrier()
        dist.destroy_process_group()


def split_by_rank(draws: list[tuple[int, list[int]]], world_size: int) -> list[list[tuple[int, list[int]]]]:
    """``draws`` (scene index, frames) in ``world_size`` equal-count shares with balanced numbers of views.

    A step waits for its slowest rank and context sizes vary (``min_views..max_views``), so contiguous slices
    would leave GPUs idle (~10% at 4 scenes per rank); equal counts keep DDP's mean of the ranks' means equal
    to the global batch's mean. Greedy: largest context first, to the least-loaded rank with room. Every rank
    computes the same split; a share keeps the draw order (one rank: ``draws`` unchanged).
    """
    per_rank = len(draws) // world_size
    load, shares = [0] * world_size, [[] for _ in range(world_size)]  # shares: indices into draws
    for j in sorted(range(len(draws)), key=lambda j: -len(draws[j][1])):  # stable: ties in draw order
        r = min((r for r in range(world_size) if len(shares[r]) < per_rank), key=lambda r: load[r])
        shares[r].append(j)
        load[r] += len(draws[j][1])
    return [[draws[j] for j in sorted(share)] for share in shares]


def mean_over_ranks(values: dict[str, float], info: DistInfo) -> dict[str, float]:
    """``values`` averaged over ranks (each rank holds the mean over its equal share of the global batch, so
    this is the global batch's mean); keys present on some ranks only are averaged where present."""
    if info.world_size == 1:
        return values
    gathered = gather(values, info)  # objects, not one tensor: robust to a term missing on a rank
    keys = list(dict.fromkeys(k for g in gathered for k in g))
    return {k: sum(g[k] for g in gathered if k in g) / sum(k in g for g in gathered) for k in keys}


def gather(value: Any, info: DistInfo) -> list:
    """``value`` of every rank, in rank order (on every rank)."""
    if info.world_size == 1:
        return [value]
    gathered = [None] * info.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def out_of_time(t0: float, limit: float, info: DistInfo) -> bool:
    """Rank 0's clock decides for every rank, so all stop at the same step."""
    flag = torch.tensor([float(time.perf_counter() - t0 > limit)], device=info.device)
    if info.world_size > 1:
        dist.broadcast(flag, src=0)
    return bool(flag.item())


def parameter_checksum(module: nn.Module) -> float:
    """``sum_i (i + 1) * sum(p_i)`` in float64: cheap, order-sensitive fingerprint of the weights (equal on every
    rank when DDP kept them in sync)."""
    with torch.no_grad():
        return float(sum((i + 1) * p.detach().double().sum() for i, p in enumerate(module.parameters())))
