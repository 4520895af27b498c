"""Shuffled streaming of cached activations for SAE training, with bounded memory.

Each epoch visits every row of every folder exactly once: the folders' shards are cut into
chunks, the chunks are read in a random order (through ``safe_open`` slices, so a shard is never
loaded whole), pooled in a buffer of about ``buffer_rows`` rows, shuffled, and handed out as
``[batch, d_model]`` float32 tensors on the training device.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from safetensors import safe_open

from interp.cache.config import NORMALIZE
from interp.cache.store import ActivationStore
from interp.errors import VSFAError


class ActivationStream:
    """Iterate shuffled activation batches from one or more activation folders.

    Args:
        dirs: activation folders (e.g. the base and the tuned model's caches for one shared
            dictionary); all must hold ``hook_name`` with the same ``d_model``.
        hook_name: which hook's activations to stream.
        batch_size: rows per yielded batch (the last batch of an epoch may be smaller).
        buffer_rows: rows pooled and shuffled together; bounds memory.
        device: where yielded tensors live.
        normalize: ``none`` or ``expected_average_only_in`` (scale so the mean squared norm is
            ``d_model``, as sae_lens does); the factor is in :attr:`scaling_factor`.
        seed: shuffling seed; epoch ``e`` uses ``seed + e``.
        epochs: number of passes (``None``: forever).
    """

    def __init__(
        self,
        dirs: Sequence[str | os.PathLike] | str | os.PathLike,
        hook_name: str,
        *,
        batch_size: int = 4096,
        buffer_rows: int = 262144,
        device: str | torch.device = "cpu",
        normalize: str = "none",
        seed: int = 0,
        epochs: int | None = None,
        chunk_rows: int | None = None,
    ):
        if isinstance(dirs, (str, os.PathLike)):
            dirs = [dirs]
        if not dirs:
            raise VSFAError("--acts: give at least one activation folder")
        if normalize not in NORMALIZE:
            raise VSFAError(f"normalize={normalize!r}: expected one of {NORMALIZE}")
        self.stores = [ActivationStore(d) for d in dirs]
        for store in self.stores:
            store.check_hook(hook_name)
        widths = {store.d_model for store in self.stores}
        if len(widths) > 1:
            described = ", ".join(f"{s.path}: {s.d_model}" for s in self.stores)
            raise VSFAError(f"activation folders disagree on d_model ({described})")
        self.hook_name = hook_name
        self.d_model = widths.pop()
        self.batch_size = batch_size
        self.buffer_rows = max(buffer_rows, batch_size)
        self.chunk_rows = chunk_rows or max(1, min(self.buffer_rows // 4, 65536))
        self.device = torch.device(device)
        self.seed = seed
        self.epochs = epochs
        self.normalize = normalize
        self.scaling_factor = 1.0
        if normalize == "expected_average_only_in":
            self.scaling_factor = self.estimate_scaling_factor()

    @property
    def rows(self) -> int:
        return sum(len(store) for store in self.stores)

    def _chunks(self) -> list[tuple[Path, int, int]]:
        chunks = []
        for store in self.stores:
            for shard, file in zip(store.manifest["shards"], store.shard_files()):
                for start in range(0, shard["rows"], self.chunk_rows):
                    chunks.append((file, start, min(start + self.chunk_rows, shard["rows"])))
        return chunks

    def _read(self, chunk: tuple[Path, int, int]) -> torch.Tensor:
        file, start, stop = chunk
        with safe_open(str(file), framework="pt") as handle:
            return handle.get_slice(self.hook_name)[start:stop].float()

    @torch.no_grad()
    def estimate_scaling_factor(self, n_rows: int = 65536) -> float:
        """``sqrt(d_model) / mean ||x||`` over up to ``n_rows`` rows (sae_lens's convention)."""
        norms, seen = [], 0
        generator = torch.Generator().manual_seed(self.seed)
        chunks = self._chunks()
        for i in torch.randperm(len(chunks), generator=generator).tolist():
            block = self._read(chunks[i])
            norms.append(block.norm(dim=-1))
            seen += block.shape[0]
            if seen >= n_rows:
                break
        mean_norm = torch.cat(norms).mean().item() if norms else 1.0
        return float(self.d_model**0.5 / max(mean_norm, 1e-12))

    def epoch(self, index: int = 0) -> Iterator[torch.Tensor]:
        """One pass over every row, shuffled, in batches."""
        for batch in self._epoch_rows(index):
            yield self._prepare(batch)

    def _epoch_rows(self, index: int) -> Iterator[torch.Tensor]:
        """The batches of epoch ``index`` as read (on the CPU, not yet scaled)."""
        generator = torch.Generator().manual_seed(self.seed + index)
        chunks = self._chunks()
        order = torch.randperm(len(chunks), generator=generator).tolist()
        buffer: list[torch.Tensor] = []
        buffered = 0
        for position, chunk_index in enumerate(order):
            block = self._read(chunks[chunk_index])
            buffer.append(block)
            buffered += block.shape[0]
            last = position == len(order) - 1
            if buffered < self.buffer_rows and not last:
                continue
            pool = torch.cat(buffer)
            pool = pool[torch.randperm(pool.shape[0], generator=generator)]
            # hand out whole batches; keep the remainder for the next fill unless this is the end
            n_out = pool.shape[0] if last else pool.shape[0] - pool.shape[0] % self.batch_size
            for start in range(0, n_out, self.batch_size):
                yield pool[start : min(start + self.batch_size, n_out)]
            buffer = [pool[n_out:]] if n_out < pool.shape[0] else []
            buffered = pool.shape[0] - n_out

    @property
    def batches_per_epoch(self) -> int:
        """Batches one :meth:`epoch` yields (every pool hands out whole batches but the last)."""
        return max(1, -(-self.rows // self.batch_size))

    def position(self, step: int) -> dict[str, int]:
        """Where the stream stands after ``step`` batches: ``{"epoch", "batch"}``."""
        epoch, batch = divmod(step, self.batches_per_epoch)
        return {"epoch": epoch, "batch": batch}

    def iter_from(self, step: int = 0) -> Iterator[torch.Tensor]:
        """The batches of ``iter(self)`` after the first ``step`` of them, the same tensors: whole
        epochs are skipped without reading (each epoch's order comes from its own seed), and the
        batches of the epoch it stops in are drawn again from disk but not moved to the device.
        This is how a resumed SAE run sees exactly the data an uninterrupted one would."""
        start = self.position(step)
        index = start["epoch"]
        while self.epochs is None or index < self.epochs:
            skip = start["batch"] if index == start["epoch"] else 0
            for number, batch in enumerate(self._epoch_rows(index)):
                if number >= skip:
                    yield self._prepare(batch)
            index += 1

    def _prepare(self, batch: torch.Tensor) -> torch.Tensor:
        if self.scaling_factor != 1.0:
            batch = batch * self.scaling_factor
        return batch.to(self.device, non_blocking=True)

    def __iter__(self) -> Iterator[torch.Tensor]:
        return self.iter_from(0)
