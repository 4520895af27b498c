"""TopK SAE training with the latents sharded across ranks (``--distribute-latents``).

Each rank holds a contiguous :func:`~interp.parallel.shard_bounds` slice of the latents (the
``W_enc`` columns, ``b_enc`` entries and ``W_dec`` rows, and so their Adam state) and a replica
of ``b_dec``; every rank sees the whole global batch. One step:

1. each rank computes its latents' pre-activations (``hidden_pre`` as sae_lens: times the
   decoder norm with ``rescale_acts_by_decoder_norm``) and their top ``k`` per row;
2. the candidates (values and global indices) are all-gathered and the global top ``k`` of each
   row taken from them (the top ``k`` of the full row is among the ranks' top ``k``);
3. each rank decodes the chosen latents it holds, and the partial reconstructions are summed
   over ranks (:class:`_SumPartials`), plus ``b_dec``.

The loss is then the same number on every rank, and ``backward`` gives each rank the gradient
of its own slice. ``b_dec`` enters the encoder input (``x - b_dec``) of every rank's latents:
that part of its gradient is summed over ranks (:class:`_SumGradient`), so it is identical on
every rank. The TopK auxiliary loss is computed the same way (the top ``k_aux`` dead latents
per row, gathered, with sae_lens's ``k_aux`` and scale), so it has sae_lens's semantics.
Gradient clipping uses the global norm (:meth:`ShardedTopK.clip_grad_norm`).

The step uses plain autograd on dense ``[batch, d_sae / world]`` activations rather than the
fused sparse step of :mod:`interp.sae.fast`: correctness over speed. The dead-latent counters
are kept whole on every rank (every rank knows every chosen latent after step 2).
:meth:`ShardedTopK.gather_into` writes the slices back into the full sae_lens SAE, which is then
saved in the one-process format; checkpoints are gathered the same way
(:meth:`ShardedTopK.whole_optimizer`) and a resume keeps each rank's slice of the whole one
(:meth:`ShardedTopK.load_whole`), so they are one-process checkpoints.
"""

from __future__ import annotations

from typing import Any

import torch

from interp.parallel import Ranks, shard_bounds

SHARDED = {"W_enc": 1, "b_enc": 0, "W_dec": 0}
"""The latent-indexed parameters and the dimension that indexes the latents."""


class _SumPartials(torch.autograd.Function):
    """Sum of every rank's tensor; the loss downstream is the same on every rank, so each rank's
    gradient is the incoming one (no reduction backward)."""

    @staticmethod
    def forward(ctx, partial: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        total = partial.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad


class _SumGradient(torch.autograd.Function):
    """Identity forward; backward sums the gradient over ranks (a replicated tensor used by
    every rank's own latents)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


def _gather(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's ``[rows, n]`` tensor side by side: ``[rows, world * n]``."""
    import torch.distributed as dist

    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=1)


def _global_top_k(score: torch.Tensor, start: int, k: int) -> torch.Tensor:
    """``[rows, d_local]`` scores of latents ``start...`` -> a bool mask of the local latents
    among each row's global top ``k`` (over all ranks' latents)."""
    rows, local = score.shape
    values = score.new_full((rows, k), float("-inf"))
    indices = torch.full((rows, k), -1, dtype=torch.int64, device=score.device)
    top = score.topk(min(k, local), dim=-1)
    values[:, : top.values.shape[1]] = top.values
    indices[:, : top.values.shape[1]] = top.indices + start
    # candidates in global index order, so that ties go to the lower index as in torch.topk
    all_indices = _gather(indices)
    order = all_indices.masked_fill(all_indices < 0, 1 << 62).argsort(dim=-1, stable=True)
    all_values = _gather(values).gather(1, order)
    all_indices = all_indices.gather(1, order)
    chosen = all_indices.gather(1, all_values.topk(k, dim=-1).indices) - start
    # positions outside this slice go to an extra column that is dropped
    chosen = torch.where((chosen >= 0) & (chosen < local), chosen, local)
    mask = torch.zeros(rows, local + 1, dtype=torch.bool, device=score.device)
    mask.scatter_(1, chosen, True)
    mask = mask[:, :local]
    return mask


class ShardedTopK(torch.nn.Module):
    """This rank's slice of a sae_lens TopK training SAE's latents, and the replicated
    ``b_dec``; ``step`` is a :data:`interp.sae.fit.StepFn` over the whole batch."""

    def __init__(self, sae: Any, ranks: Ranks):
        super().__init__()
        self.cfg, self.ranks = sae.cfg, ranks
        self.start, self.stop = shard_bounds(sae.cfg.d_sae, ranks.rank, ranks.world_size)
        s = slice(self.start, self.stop)
        self.W_enc = torch.nn.Parameter(sae.W_enc.detach()[:, s].clone())
        self.b_enc = torch.nn.Parameter(sae.b_enc.detach()[s].clone())
        self.W_dec = torch.nn.Parameter(sae.W_dec.detach()[s].clone())
        self.b_dec = torch.nn.Parameter(sae.b_dec.detach().clone())

    def _decode(self, acts: torch.Tensor, norm: torch.Tensor | None) -> torch.Tensor:
        partial = (acts / norm if norm is not None else acts) @ self.W_dec
        return _SumPartials.apply(partial)

    def step(self, sae: Any, x: torch.Tensor, dead: torch.Tensor, *_: Any) -> Any:
        """The loss of sae_lens's ``training_forward_pass`` on the whole batch ``x`` (identical
        on every rank) with this rank's slice in the graph; ``dead`` is the whole mask."""
        from interp.sae.fit import Step

        cfg = self.cfg
        b_dec_in = _SumGradient.apply(self.b_dec)
        sae_in = x - b_dec_in if cfg.apply_b_dec_to_input else x
        norm = self.W_dec.norm(dim=-1) if cfg.rescale_acts_by_decoder_norm else None
        hidden_pre = sae_in @ self.W_enc + self.b_enc
        if norm is not None:
            hidden_pre = hidden_pre * norm
        chosen = _global_top_k(hidden_pre.detach(), self.start, cfg.k)
        acts = torch.where(chosen, hidden_pre.relu(), hidden_pre.new_zeros(()))
        sae_out = self._decode(acts, norm) + self.b_dec
        mse_loss = (sae_out - x).pow(2).sum(-1).mean()
        losses = {"mse_loss": mse_loss, "auxiliary_reconstruction_loss": mse_loss.new_tensor(0.0)}
        loss = mse_loss
        if (num_dead := int(dead.sum())) > 0:
            k_aux = x.shape[-1] // 2
            scale = min(num_dead / k_aux, 1.0)
            k_aux = min(k_aux, num_dead)
            dead_local = dead[self.start : self.stop]
            masked = hidden_pre.detach().masked_fill(~dead_local, float("-inf"))
            aux_chosen = _global_top_k(masked, self.start, k_aux) & dead_local
            aux_acts = torch.where(aux_chosen, hidden_pre, hidden_pre.new_zeros(()))
            residual = (x - sae_out).detach()
            aux = (self._decode(aux_acts, norm) - residual).pow(2).sum(-1).mean()
            losses["auxiliary_reconstruction_loss"] = cfg.aux_loss_coefficient * scale * aux
            loss = loss + losses["auxiliary_reconstruction_loss"]
        fired_local = (acts.detach() > 0).any(0).to(torch.int32)
        fired = torch.zeros(cfg.d_sae, dtype=torch.int32, device=x.device)
        fired[self.start : self.stop] = fired_local
        fired = _SumPartials.apply(fired) > 0
        l0 = float(_SumPartials.apply((acts.detach() > 0).sum().double())) / x.shape[0]
        return Step(loss, losses, sae_out, fired, l0)

    def clip_grad_norm(self, max_norm: float) -> None:
        """Scale the gradients to global norm ``max_norm`` at most (the sharded parameters'
        squared norms summed over ranks, ``b_dec``'s counted once)."""
        import torch.distributed as dist

        sharded = [p.grad for p in (self.W_enc, self.b_enc, self.W_dec) if p.grad is not None]
        total = torch.stack([g.double().pow(2).sum() for g in sharded]).sum()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        if self.b_dec.grad is not None:
            total = total + self.b_dec.grad.double().pow(2).sum()
        coefficient = max_norm / (float(total.sqrt()) + 1e-6)
        if coefficient < 1.0:
            for p in self.parameters():
                if p.grad is not None:
                    p.grad.mul_(coefficient)

    def _whole(self, mine: torch.Tensor, dim: int) -> torch.Tensor:
        """Every rank's slice along ``dim`` of a latent-indexed tensor, concatenated."""
        import torch.distributed as dist

        world, d_sae = self.ranks.world_size, self.cfg.d_sae
        bounds = [shard_bounds(d_sae, r, world) for r in range(world)]
        shape = list(mine.shape)
        shape[dim] = max(stop - start for start, stop in bounds)
        padded = mine.new_zeros(shape)
        padded.narrow(dim, 0, mine.shape[dim]).copy_(mine)
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded)
        return torch.cat([p.narrow(dim, 0, b - a) for p, (a, b) in zip(parts, bounds)], dim)

    def _mine(self, whole: torch.Tensor, name: str) -> torch.Tensor:
        """This rank's slice of a whole tensor shaped like parameter ``name``."""
        if name not in SHARDED:
            return whole.clone()
        return whole.narrow(SHARDED[name], self.start, self.stop - self.start).clone()

    @torch.no_grad()
    def gather_into(self, sae: Any) -> None:
        """Every rank's slice written into the full ``sae`` (on every rank)."""
        for name, dim in SHARDED.items():
            getattr(sae, name).copy_(self._whole(getattr(self, name).detach(), dim))
        sae.b_dec.copy_(self.b_dec.detach())

    def whole_optimizer(self, sae: Any, optimizer: torch.optim.Optimizer) -> torch.optim.Adam:
        """The parameters gathered into ``sae`` and ``optimizer``'s state gathered into an Adam
        over ``sae``'s parameters (what a one-process checkpoint holds); every rank calls it."""
        self.gather_into(sae)
        whole = torch.optim.Adam(sae.parameters())
        theirs = dict(sae.named_parameters())
        for name, param in self.named_parameters():
            state = optimizer.state.get(param, {})
            whole.state[theirs[name]] = {
                key: self._whole(value, SHARDED[name])
                if name in SHARDED and value.dim() > 0
                else value.clone()
                for key, value in state.items()
            }
        return whole

    @torch.no_grad()
    def load_whole(
        self, sae: Any, whole: torch.optim.Optimizer, optimizer: torch.optim.Optimizer
    ) -> None:
        """This rank's slices of ``sae``'s parameters and of ``whole``'s Adam state (a restored
        one-process checkpoint) into this module and ``optimizer``."""
        theirs = dict(sae.named_parameters())
        for name, param in self.named_parameters():
            param.copy_(self._mine(theirs[name].detach(), name))
            state = whole.state.get(theirs[name], {})
            optimizer.state[param] = {
                key: self._mine(value, name) if value.dim() > 0 else value.clone()
                for key, value in state.items()
            }
