"""Data-parallel stages under ``torchrun``: which process this is and which share of the work
it does.

``torchrun --nproc_per_node N -m interp.cli STAGE ...`` starts N processes with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` set. A stage that runs data-parallel (``cache``,
``sae train``, ``eval``, ``steer``):

* enters :func:`process_group` (gloo on CPUs, nccl on GPUs; nothing for one process);
* works on :func:`shard_bounds` of its items, a contiguous, deterministic slice, so the union
  over ranks is the one-process run in order;
* lets rank 0 (:attr:`Ranks.is_main`) merge and write what covers all ranks.

Launches that asked for several processes but started one (``accelerate launch --cpu``, MPI)
are refused by :func:`check_launch` in one line, never run as N independent copies.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from interp.errors import VSFAError

MPI_SIZES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
"""The variables MPI implementations give the process count in."""


@dataclass(frozen=True)
class Ranks:
    """This process's place in a launch (``rank`` 0 of ``world_size`` 1 when run alone)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that merges and writes what covers every rank."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _int(env: Mapping[str, str], name: str) -> int | None:
    value = env.get(name, "").strip()
    return int(value) if value.isdigit() else None


def launched_by_accelerate(env: Mapping[str, str] | None = None) -> bool:
    """The process was started by ``accelerate launch`` (it always sets ``ACCELERATE_USE_CPU``
    and ``ACCELERATE_MIXED_PRECISION`` in its children's environment)."""
    env = os.environ if env is None else env
    return "ACCELERATE_USE_CPU" in env or "ACCELERATE_MIXED_PRECISION" in env


def check_launch(env: Mapping[str, str] | None = None, command: str = "train") -> None:
    """Raise a one-line :class:`VSFAError` for a launch that asked for several processes but
    would run this one alone; return for every other launch.

    * ``accelerate launch --cpu --num_processes N`` (or ``--num_machines N`` without an MPI
      hostfile) starts ONE process: it sets ``MASTER_ADDR`` but no ``WORLD_SIZE``;
    * an MPI launch (``mpirun``, ``accelerate launch --mpirun_hostfile``) gives the process count
      in the MPI variables only.

    ``command`` is the ``vsfa`` subcommand named in the message's working launch.
    """
    env = os.environ if env is None else env
    if _int(env, "WORLD_SIZE") is not None:
        return
    mpi = max((_int(env, name) or 1 for name in MPI_SIZES), default=1)
    if mpi > 1:
        raise VSFAError(
            f"an MPI launch of {mpi} processes is not supported (they would run separately); "
            f"launch with `torchrun --nproc_per_node N -m interp.cli {command} ...`"
        )
    if launched_by_accelerate(env) and "MASTER_ADDR" in env:
        raise VSFAError(
            "accelerate launch asked for several processes but started one (it does so for "
            "--cpu and for --num_machines without --multi_gpu); use `accelerate launch "
            "--multi_gpu --num_processes N` on GPUs or `torchrun --nproc_per_node N -m interp.cli "
            f"{command} ...` (gloo on CPUs)"
        )


def current_ranks(env: Mapping[str, str] | None = None) -> Ranks:
    """This process's :class:`Ranks` from the launcher's variables (one process without them)."""
    env = os.environ if env is None else env
    world = _int(env, "WORLD_SIZE") or 1
    rank = _int(env, "RANK") or 0
    local = _int(env, "LOCAL_RANK")
    if world < 1 or not 0 <= rank < world:
        raise VSFAError(f"RANK={rank} WORLD_SIZE={world}: not a valid launch")
    return Ranks(rank=rank, world_size=world, local_rank=rank if local is None else local)


def shard_bounds(n_items: int, rank: int, world_size: int) -> tuple[int, int]:
    """``[start, stop)`` of rank ``rank``'s contiguous share of ``n_items``: shares differ by at
    most one item (the first ``n_items % world_size`` ranks take one more), and concatenating
    the shares of ranks 0..N-1 gives the items in order."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} of {world_size}")
    base, extra = divmod(n_items, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def _backend(device: str) -> str:
    return "nccl" if str(device).startswith("cuda") else "gloo"


@contextmanager
def process_group(device: str = "cpu", command: str = "train") -> Iterator[Ranks]:
    """Join the launch's process group for the duration of a stage; yield this process's
    :class:`Ranks`. One process: no group, nothing imported. A group already set up (by
    accelerate, or an outer stage) is used as is and left open."""
    check_launch(command=command)
    ranks = current_ranks()
    if not ranks.distributed:
        yield ranks
        return
    import torch.distributed as dist

    created = not dist.is_initialized()
    if created:
        if str(device).startswith("cuda"):
            import torch

            torch.cuda.set_device(ranks.local_rank)
        dist.init_process_group(backend=_backend(device))
    try:
        yield ranks
    finally:
        if created and dist.is_initialized():
            dist.destroy_process_group()


def barrier(ranks: Ranks) -> None:
    """Wait for every rank (nothing for one process)."""
    if ranks.distributed:
        import torch.distributed as dist

        dist.barrier()


def gather_objects(value: Any, ranks: Ranks) -> list[Any]:
    """Every rank's ``value`` (picklable, produced by this program), in rank order, on every
    rank (``[value]`` for one process)."""
    if not ranks.distributed:
        return [value]
    import torch.distributed as dist

    out: list[Any] = [None] * ranks.world_size
    dist.all_gather_object(out, value)
    return out


def broadcast_object(value: Any, ranks: Ranks, source: int = 0) -> Any:
    """Rank ``source``'s ``value`` on every rank (``value`` for one process)."""
    if not ranks.distributed:
        return value
    import torch.distributed as dist

    box = [value if ranks.rank == source else None]
    dist.broadcast_object_list(box, src=source)
    return box[0]
