"""How a run was launched: one process, ``torchrun``, or ``accelerate launch``.

``vsfa train`` runs several processes when ``WORLD_SIZE`` says so (``torchrun``, and
``accelerate launch --multi_gpu``, which starts its processes through torchrun's launcher).
Two launches would otherwise run as independent single processes, each training the whole run:

* ``accelerate launch --cpu --num_processes N`` (or ``--num_machines N`` without an MPI hostfile):
  accelerate starts ONE process for it; it sets ``MASTER_ADDR`` for the process group it expects
  but no ``WORLD_SIZE``;
* an MPI launch (``mpirun``, ``accelerate launch --mpirun_hostfile``): the process count is in
  the MPI variables only.

:func:`check_launch` refuses both in one line that gives the command that works.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from interp.errors import VSFAError

MPI_SIZES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
"""The variables MPI implementations give the process count in."""


def _int(env: Mapping[str, str], name: str) -> int | None:
    value = env.get(name, "").strip()
    return int(value) if value.isdigit() else None


def launched_by_accelerate(env: Mapping[str, str] | None = None) -> bool:
    """The process was started by ``accelerate launch`` (it always sets ``ACCELERATE_USE_CPU``
    and ``ACCELERATE_MIXED_PRECISION`` in its children's environment)."""
    env = os.environ if env is None else env
    return "ACCELERATE_USE_CPU" in env or "ACCELERATE_MIXED_PRECISION" in env


def check_launch(env: Mapping[str, str] | None = None) -> None:
    """Raise a one-line :class:`VSFAError` for a launch that asked for several processes but
    would run this one alone (see the module's text); return for every other launch."""
    env = os.environ if env is None else env
    world = _int(env, "WORLD_SIZE")
    if world is not None:
        return
    mpi = max((_int(env, name) or 1 for name in MPI_SIZES), default=1)
    if mpi > 1:
        raise VSFAError(
            f"an MPI launch of {mpi} processes is not supported (they would train separately); "
            "launch with `torchrun --nproc_per_node N -m interp.cli train ...`"
        )
    if launched_by_accelerate(env) and "MASTER_ADDR" in env:
        raise VSFAError(
            "accelerate launch asked for several processes but started one (it does so for "
            "--cpu and for --num_machines without --multi_gpu); use `accelerate launch "
            "--multi_gpu --num_processes N` on GPUs or `torchrun --nproc_per_node N -m interp.cli "
            "train ...` (gloo on CPUs)"
        )
