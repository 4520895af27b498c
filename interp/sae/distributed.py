"""Data-parallel SAE training under ``torchrun``: every rank trains on its part of each batch.

``torchrun --nproc_per_node N -m interp.cli sae train ...`` starts N processes. Each one draws
the same shuffled global batches from the activation stream (same seed, same pool), keeps its
:func:`~interp.parallel.shard_bounds` slice of each, and computes the loss on it weighted by its
share of the batch (``rows_r / rows``). :meth:`DataParallel.all_reduce_gradients` sums the
weighted gradients, which gives every rank the gradient of the global batch's mean loss, the
one a single process computes. Gradient clipping, Adam and the learning-rate schedule then run
on identical inputs, so the parameters stay identical on every rank without being exchanged
(there is no separate decoder renormalisation in this loop: TopK rescales by the decoder norm
inside the step, on each rank's identical weights). The latents that fired on any rank's rows
reset the dead-latent counters on all ranks (:meth:`DataParallel.fired_anywhere`), and the logged
loss, FVU and L0 are those of the global batch (:meth:`DataParallel.log_entry`).

:meth:`DataParallel.check_replicas` compares the ranks' parameters (a float64 checksum per
tensor) at every checkpoint and at the end, and refuses to save diverged replicas.

While rank 0 saves and evaluates the SAE (the spliced CE/KL loads the model) the other ranks
wait in :func:`wait_for_main`, on a gloo group made before training with a timeout of
:data:`WAIT_HOURS`: the default group's timeout (NCCL's is 10 minutes) would end them first.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import torch

from interp.errors import VSFAError
from interp.parallel import Ranks, gather_objects, shard_bounds

WAIT_HOURS = 24
"""How long the other ranks wait for rank 0 to save and evaluate the SAE."""


def waiting_group(ranks: Ranks) -> Any:
    """A gloo group with a :data:`WAIT_HOURS` timeout for :func:`wait_for_main`; every rank makes
    it at the same point (before training). None for one process."""
    if not ranks.distributed:
        return None
    import torch.distributed as dist

    return dist.new_group(backend="gloo", timeout=timedelta(hours=WAIT_HOURS))


def wait_for_main(ranks: Ranks, group: Any) -> None:
    """Every rank waits here until rank 0 gets here too (after writing what covers all ranks)."""
    if ranks.distributed:
        import torch.distributed as dist

        dist.barrier(group=group)


class DataParallel:
    """This rank's share of every global batch, and the reductions that make N ranks one run."""

    def __init__(self, ranks: Ranks, device: torch.device):
        self.ranks = ranks
        self.device = device

    def local(self, batch: torch.Tensor) -> tuple[torch.Tensor, float]:
        """This rank's contiguous rows of a global ``batch`` on the training device, and their
        share of it (the loss weight)."""
        start, stop = shard_bounds(batch.shape[0], self.ranks.rank, self.ranks.world_size)
        part = batch[start:stop].to(self.device, non_blocking=True)
        return part, (stop - start) / max(1, batch.shape[0])

    def _sum(self, tensor: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def all_reduce_gradients(self, module: torch.nn.Module) -> None:
        """Sum the (share-weighted) gradients over ranks, in place; a parameter without a
        gradient on this rank (no rows here) contributes zeros."""
        for param in module.parameters():
            if not param.requires_grad:
                continue
            if param.grad is None:
                param.grad = torch.zeros_like(param)
            self._sum(param.grad)

    def fired_anywhere(self, fired: torch.Tensor) -> torch.Tensor:
        """Latents active on some row of the global batch (``fired``: this rank's rows)."""
        return self._sum(fired.to(torch.int32)) > 0

    def broadcast_parameters(self, module: torch.nn.Module) -> None:
        """Rank 0's parameters and buffers on every rank (the replicas start identical)."""
        import torch.distributed as dist

        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)

    def check_replicas(self, module: torch.nn.Module) -> None:
        """Raise a one-line error when the ranks' parameters differ (float64 sums per tensor)."""
        sums = [float(p.detach().double().sum()) for p in module.parameters()]
        if any(other != sums for other in gather_objects(sums, self.ranks)):
            raise VSFAError(
                f"SAE parameters diverged across the {self.ranks.world_size} training processes "
                "(they must stay identical); check that every rank reads the same activations"
            )

    @torch.no_grad()
    def log_entry(
        self, step: int, result: Any | None, part: torch.Tensor, weight: float
    ) -> dict[str, float]:
        """Loss, FVU, L0 and the loss terms of the global batch from every rank's part
        (``result`` None: this rank had no rows)."""
        names = list(result.losses) if result is not None else None
        names = _agree_on_names(names, self.ranks)
        x = part.double()
        # [rows, weighted loss, weighted L0, squared error, sum x^2, weighted terms..., sum x]
        values = torch.zeros(5 + len(names) + part.shape[1], dtype=torch.float64)
        values[0] = part.shape[0]
        if result is not None:
            values[1] = weight * float(result.loss.detach())
            values[2] = weight * result.l0
            values[3] = float((result.sae_out.detach().double() - x).pow(2).sum())
            values[4] = float(x.pow(2).sum())
            for i, name in enumerate(names):
                values[5 + i] = weight * float(result.losses[name].detach())
            values[5 + len(names) :] = x.sum(0).cpu()
        values = self._sum(values.to(self.device)).cpu()
        rows = float(values[0])
        mean = values[5 + len(names) :] / max(rows, 1.0)
        variance = float(values[4] - rows * mean.pow(2).sum())
        entry = {
            "step": step,
            "loss": float(values[1]),
            "fvu": float(values[3]) / max(variance, 1e-12),
            "l0": float(values[2]),
        }
        entry.update({name: float(values[5 + i]) for i, name in enumerate(names)})
        return entry


def _agree_on_names(names: list[str] | None, ranks: Ranks) -> list[str]:
    """The loss-term names of a rank that had rows (every rank logs the same terms)."""
    for found in gather_objects(names, ranks):
        if found is not None:
            return found
    return []
