"""Data-parallel training over several processes (``torchrun --nproc_per_node N``): one per GPU,
or several CPU processes (gloo) — the same code, tested here on CPU.

torchrun sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; without them there is one process
and nothing here does anything.  Every process holds the same seeded batch list; rank r embeds
the r-th contiguous share of each batch.  The query, positive and negative embeddings of all
ranks are gathered *with their gradients* (``torch.distributed.nn.functional.all_gather``), so
each rank computes the loss of the whole batch — the same in-batch negatives, the same value as
one process would get.  Backward sends each rank the gradient of that loss for its own share
(summed over the W identical copies), and the parameter gradients are then averaged over
ranks: the result equals the one-process gradient of the whole batch (a test checks it).
Parameters stay identical on every rank (same start, same averaged gradients, same optimizer),
so dev scores and early stopping agree without further messages.  Rank 0 alone mines hard
negatives and sends the resulting examples to the others, then writes the model and judges it.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from embedlab.errors import EmbedlabError

if TYPE_CHECKING:
    import torch

_T = TypeVar("_T")


@dataclass(frozen=True)
class Cluster:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


ONE_PROCESS = Cluster()  # the default: no torchrun


def from_env() -> Cluster:
    """The processes torchrun started (one when not under torchrun)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise EmbedlabError("WORLD_SIZE, RANK and LOCAL_RANK must be whole numbers (torchrun sets them)") from None
    if world < 1 or not 0 <= rank < world:
        raise EmbedlabError("inconsistent torchrun environment", found=f"RANK={rank} WORLD_SIZE={world}")
    return Cluster(rank=rank, world=world, local_rank=local)


def start(cluster: Cluster) -> None:
    """Join the process group (nccl on CUDA, gloo on CPU); nothing for one process."""
    if cluster.world == 1:
        return
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(cluster.local_rank)
    dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")


def barrier(cluster: Cluster) -> None:
    if cluster.world > 1:
        import torch.distributed as dist

        dist.barrier()


def from_main(value: _T | None, cluster: Cluster) -> _T:
    """Rank 0's ``value`` in every process (pickled and broadcast), so all train on the same data."""
    if cluster.world > 1:
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        value = box[0]
    if value is None:
        raise RuntimeError("rank 0 has no value to share")
    return value


def stop(cluster: Cluster) -> None:
    if cluster.world > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def shares(total: int, world: int) -> list[int]:
    """Sizes of the W contiguous shares of ``total`` items (the first ones one larger)."""
    return [total // world + (1 if r < total % world else 0) for r in range(world)]


def gather_rows(local: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Every rank's rows, in rank order, keeping the autograd graph (ranks may hold different
    numbers of rows: they are padded to the largest for the exchange, then cut back)."""
    import torch
    import torch.distributed.nn.functional as dfn

    width = max(sizes)
    padded = (
        local
        if local.shape[0] == width
        else torch.cat([local, local.new_zeros((width - local.shape[0], local.shape[1]))])
    )
    with warnings.catch_warnings():  # deprecated in favour of a private API; still the autograd-aware gather
        warnings.simplefilter("ignore", FutureWarning)
        parts = dfn.all_gather(padded)
    return torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)])


def average_gradients(model: Any, cluster: Cluster) -> None:
    """Sum every parameter's gradient over ranks and divide by W (what DDP does), in one exchange
    of one flat buffer.  Every rank sends the same parameters in the same order (a gradient a rank
    does not have counts as zeros), so the exchange always matches; a parameter ends with a
    gradient when any rank gave it one (unused ones stay None, as in one process)."""
    if cluster.world == 1:
        return
    import torch
    import torch.distributed as dist

    params = [p for p in model.parameters() if p.requires_grad]
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
    present = torch.tensor([float(p.grad is not None) for p in params], device=flat.device)
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    dist.all_reduce(present, op=dist.ReduceOp.SUM)
    flat /= cluster.world
    offset = 0
    for param, seen in zip(params, present.tolist(), strict=True):
        size = param.numel()
        if seen:
            param.grad = flat[offset : offset + size].view_as(param).clone()
        offset += size
