"""A fast training step for sae_lens's TopK and BatchTopK SAEs.

sae_lens's ``TopKTrainingSAE.training_forward_pass`` builds the dense ``[batch, d_sae]`` latent
tensor, decodes it with a dense matmul and backpropagates through both dense products, so one step
costs about three dense ``batch x d_in x d_sae`` matmuls plus several dense elementwise passes.
Only ``k`` latents per row carry a gradient, so this step:

1. computes the dense pre-activations once, without autograd (the one unavoidable dense matmul);
2. takes the top-k (per row, or over the whole batch for BatchTopK);
3. decodes sparsely with ``embedding_bag`` (``k`` decoder rows per token);
4. backpropagates by hand through the selected latents only (``index_add`` into the encoder
   and decoder gradients).

The parameters are the sae_lens SAE's own (``W_enc [d_in, d_sae]``, ``b_enc``, ``W_dec``,
``b_dec``), the loss is the same (summed-squared-error MSE plus the TopK auxiliary loss on dead
latents), and so are the gradients up to float rounding, so ``sae.save_inference_model`` and
``SAE.load_from_disk`` work unchanged. ``tests/test_sae.py`` checks loss and gradients against
``training_forward_pass`` on the same batch.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sae_lens.saes.batchtopk_sae import BatchTopKTrainingSAE
from sae_lens.saes.topk_sae import TopKTrainingSAE


class _SparseDecode(torch.autograd.Function):
    """``out[r] = sum_{i in row r} act_i * W_dec[col_i]`` with ``act = f(pre_i)``.

    ``pre_i = sae_in[row_i] . W_enc[:, col_i] + b_enc[col_i]`` (with ``sae_in = x - b_dec`` when
    ``b_dec_in`` is given) was computed densely without a graph by the caller; the backward pass
    differentiates it with respect to ``W_enc``, ``b_enc``, ``W_dec`` and ``b_dec`` touching only
    the selected (row, col) pairs: one sampled dense-dense product (SDDMM) for the activations'
    gradients, and ``embedding_bag`` sums over the pairs grouped by latent for the two weight
    gradients. ``f`` is ReLU for the main reconstruction and the identity for the auxiliary
    (dead-latent) one, as in sae_lens. Entries are sorted by row, and by column within a row;
    ``crow`` are the CSR row pointers. The input activations get no gradient (they are data).
    """

    @staticmethod
    def forward(ctx, sae_in, W_enc, b_enc, W_dec, b_dec_in, pre, crow, cols, relu: bool):
        acts = pre.relu() if relu else pre
        out = F.embedding_bag(cols, W_dec, crow[:-1], mode="sum", per_sample_weights=acts)
        ctx.save_for_backward(sae_in, W_enc, W_dec, acts, crow, cols)
        ctx.relu = relu
        return out

    @staticmethod
    def backward(ctx, grad_out):
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            return _SparseDecode._backward(ctx, grad_out)

    @staticmethod
    def _backward(ctx, grad_out):
        sae_in, W_enc, W_dec, acts, crow, cols = ctx.saved_tensors
        n_rows, d_sae = sae_in.shape[0], W_dec.shape[0]
        grad_out = grad_out.contiguous()
        # d loss / d act_i = grad_out[row_i] . W_dec[col_i]
        pattern = torch.sparse_csr_tensor(
            crow, cols, torch.zeros_like(acts), (n_rows, d_sae), check_invariants=False
        )
        grad_acts = torch.sparse.sampled_addmm(pattern, grad_out, W_dec.t()).values()
        grad_pre = grad_acts * (acts > 0) if ctx.relu else grad_acts
        # the pairs grouped by latent (rows ascending within a latent): one bag per latent
        rows = torch.repeat_interleave(
            torch.arange(n_rows, device=cols.device), crow.diff(), output_size=cols.numel()
        )
        order = _stable_argsort(cols, d_sae)
        rows_t = rows.index_select(0, order)
        offsets = torch.zeros(d_sae, dtype=crow.dtype, device=crow.device)
        offsets[1:] = torch.cumsum(_counts(cols, d_sae), 0)[:-1]

        def by_latent(table: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
            """``[d_sae, d]``: row ``c`` sums ``weights_i * table[row_i]`` over pairs of ``c``."""
            weights = weights.index_select(0, order)
            return F.embedding_bag(rows_t, table, offsets, mode="sum", per_sample_weights=weights)

        grad_W_dec = by_latent(grad_out, acts)  # W_dec[col_i] += act_i * grad_out[row_i]
        # W_enc[:, col_i] += g_i * sae_in[row_i], written in W_enc's own layout
        grad_W_enc = by_latent(sae_in, grad_pre).t().contiguous()
        grad_b_enc = torch.zeros(d_sae, dtype=acts.dtype, device=acts.device)
        grad_b_enc.index_add_(0, cols, grad_pre)
        # sae_in = x - b_dec: summed over rows, d loss / d b_dec = -W_enc @ grad_b_enc
        grad_b_dec = -(W_enc @ grad_b_enc) if ctx.needs_input_grad[4] else None
        return (None, grad_W_enc, grad_b_enc, grad_W_dec, grad_b_dec) + (None,) * 4


class _SquaredError(torch.autograd.Function):
    """``(sum((recon + bias - target) ** 2) / n_rows, recon + bias)``: the summed-squared-error
    MSE of sae_lens in two passes forward and two backward; the output carries no graph.
    ``bias`` may be None; ``target`` gets no gradient."""

    @staticmethod
    def forward(ctx, recon, bias, target):
        out = recon + bias if bias is not None else recon
        error = out - target
        ctx.save_for_backward(error)
        ctx.has_bias = bias is not None
        ctx.mark_non_differentiable(out)
        return error.square().sum() / recon.shape[0], out

    @staticmethod
    def backward(ctx, grad_loss, _grad_out):
        (error,) = ctx.saved_tensors
        grad_recon = error * (grad_loss * (2.0 / error.shape[0]))
        return grad_recon, grad_recon.sum(0) if ctx.has_bias else None, None


@dataclass
class FastStepOutput:
    """What one fast step computed (the loss has a graph to call ``backward`` on)."""

    loss: torch.Tensor
    losses: dict[str, torch.Tensor]
    sae_out: torch.Tensor
    rows: torch.Tensor  # selected (row, latent) pairs, sorted by row
    cols: torch.Tensor
    acts: torch.Tensor  # the SAE's feature activations at those pairs (after ReLU)


def supports_fast_step(sae: object) -> bool:
    """The fast step covers sae_lens's TopK and BatchTopK training SAEs without normalisation
    that changes the output (``layer_norm`` / ``constant_norm_rescale``)."""
    return isinstance(sae, TopKTrainingSAE) and sae.cfg.normalize_activations in (
        "none",
        "expected_average_only_in",
    )


_FUSED_ADAM_DEVICES = ("cpu", "cuda")


def make_adam(params: Iterable[torch.nn.Parameter], lr: float) -> torch.optim.Adam:
    """sae_lens's optimizer (``torch.optim.Adam``, default betas) with torch's fused kernel where
    every parameter is a float tensor on a CPU or CUDA device: the same update rule in one pass
    over each tensor instead of about ten elementwise passes (about 5x faster on CPU at SAE
    sizes). Its state dict has the same entries."""
    params = list(params)
    fused = all(p.device.type in _FUSED_ADAM_DEVICES and p.is_floating_point() for p in params)
    return torch.optim.Adam(params, lr=lr, fused=True if fused else None)


# Small index work (tens of thousands of entries) uses ops that run in one thread (index_select,
# index_add_, numpy's radix sort) rather than advanced indexing, bincount or torch.sort, which
# open a parallel region each: cheap on an idle machine, but on a loaded one every region waits
# for a second thread to be scheduled.


def _counts(values: torch.Tensor, size: int) -> torch.Tensor:
    """``bincount(values, minlength=size)``."""
    counts = torch.zeros(size, dtype=torch.int64, device=values.device)
    return counts.index_add_(0, values, torch.ones_like(values))


def _stable_argsort(values: torch.Tensor, size: int) -> torch.Tensor:
    """``argsort(values, stable=True)`` for integers in ``[0, size)``."""
    if values.device.type != "cpu":
        return torch.argsort(values, stable=True)
    small = values.numpy().astype(np.uint16 if size <= 1 << 16 else np.int64)
    return torch.from_numpy(np.argsort(small, kind="stable"))


def _crow(rows: torch.Tensor, n_rows: int) -> torch.Tensor:
    crow = torch.zeros(n_rows + 1, dtype=torch.int64, device=rows.device)
    crow[1:] = torch.cumsum(_counts(rows, n_rows), 0)
    return crow


def _select_per_row(score: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, cols) of each row's top ``k``, sorted by row then column."""
    cols = score.topk(k, dim=-1, sorted=False).indices.sort(dim=-1).values.flatten()
    rows = torch.arange(score.shape[0], device=score.device).repeat_interleave(k)
    return rows, cols


CHUNK_ELEMENTS = 1 << 22
"""Scores per block of rows in the TopK encoder (16 MB in float32): the block stays in cache
between the matmul that writes it and the top-k that reads it, and its buffer is reused."""

GROUP = 32
"""Latents per group in :func:`_top_k_columns`'s prefilter."""


def _top_k_columns(score: torch.Tensor, k: int) -> torch.Tensor:
    """Each row's top ``k`` columns of ``score`` ``[m, n]``, ascending within a row.

    On CPU with at least ``8 k`` groups of :data:`GROUP` columns this is exact and about twice
    as fast as ``topk`` on the whole row: the ``k`` largest entries of a row lie in the ``k``
    groups with the largest maxima, and are at least the ``k``-th largest group maximum ``t``;
    only the entries ``>= t`` of those groups (about ``k + 2`` per row for random scores) go
    through a final ``topk``. Rows where that leaves fewer than ``k`` (NaN) use plain ``topk``.
    """
    m, n = score.shape
    groups = n // GROUP
    if score.device.type != "cpu" or n % GROUP or groups < 8 * k:
        return score.topk(k, dim=-1, sorted=False).indices.sort(dim=-1).values
    top = score.view(m, groups, GROUP).amax(-1).topk(k, dim=-1, sorted=False)
    threshold = top.values.amin(-1, keepdim=True)
    offsets = torch.arange(m, device=score.device)[:, None] * groups
    candidates = score.view(m * groups, GROUP).index_select(0, (top.indices + offsets).flatten())
    candidates = candidates.view(m, k * GROUP)
    keep = candidates >= threshold
    counts = keep.sum(-1)
    if int(counts.min()) < k:  # NaN scores: no threshold to filter with
        return score.topk(k, dim=-1, sorted=False).indices.sort(dim=-1).values
    flat = keep.view(-1).nonzero().view(-1)  # row-major positions in candidates
    rows, where = flat // (k * GROUP), flat % (k * GROUP)
    starts = torch.cumsum(counts, 0) - counts
    width = int(counts.max())
    slots = rows * width + torch.arange(rows.numel(), device=rows.device)
    slots -= starts.index_select(0, rows)
    padded = candidates.new_full((m * width,), float("-inf"))
    padded.index_copy_(0, slots, candidates.view(-1).index_select(0, flat))
    chosen = padded.view(m, width).topk(k, dim=-1, sorted=False).indices + starts[:, None]
    picked = where.index_select(0, chosen.view(-1))
    group = picked // GROUP + torch.arange(m, device=score.device).repeat_interleave(k) * k
    cols = top.indices.reshape(-1).index_select(0, group) * GROUP + picked % GROUP
    return cols.view(m, k).sort(dim=-1).values


def _exact_scores(
    sae_in: torch.Tensor, W: torch.Tensor, b: torch.Tensor, crow: torch.Tensor, cols: torch.Tensor
) -> torch.Tensor:
    """``sae_in[row_i] . W[:, col_i] + b[col_i]`` at the CSR pairs, in the parameters' dtype."""
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        pattern = torch.sparse_csr_tensor(
            crow,
            cols,
            b.index_select(0, cols),
            (sae_in.shape[0], W.shape[1]),
            check_invariants=False,
        )
        return torch.sparse.sampled_addmm(pattern, sae_in, W).values()


def _encode_top_k(
    sae_in: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor,
    k: int,
    select_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's top ``k`` of ``sae_in @ W + b``: ``(cols, scores)``, both ``[n, k]``, columns
    ascending within a row. The dense scores are computed a block of rows at a time into one
    buffer and never exist whole. With ``select_dtype`` they are computed in that dtype to choose
    the columns, and the chosen pairs' scores are then recomputed in the parameters' dtype."""
    n, d_sae = sae_in.shape[0], W.shape[1]
    x_s, W_s, b_s = (t.to(select_dtype) for t in (sae_in, W, b)) if select_dtype else (sae_in, W, b)
    block = max(1, CHUNK_ELEMENTS // d_sae)
    buffer = x_s.new_empty(min(n, block), d_sae)
    cols = torch.empty(n, k, dtype=torch.int64, device=sae_in.device)
    scores = sae_in.new_empty(n, k)
    for start in range(0, n, block):
        stop = min(n, start + block)
        score = torch.addmm(b_s, x_s[start:stop], W_s, out=buffer[: stop - start])
        cols[start:stop] = _top_k_columns(score, k)
        if not select_dtype:
            at = cols[start:stop] + torch.arange(stop - start, device=cols.device)[:, None] * d_sae
            torch.index_select(score.view(-1), 0, at.view(-1), out=scores[start:stop].view(-1))
    if select_dtype:
        crow = torch.arange(0, n * k + 1, k, device=sae_in.device)
        scores = _exact_scores(sae_in, W, b, crow, cols.flatten()).view(n, k)
    return cols, scores


def fast_training_step(
    sae: TopKTrainingSAE,
    x: torch.Tensor,
    dead_neuron_mask: torch.Tensor | None = None,
    *,
    select_dtype: torch.dtype | None = None,
) -> FastStepOutput:
    """Loss of ``sae.training_forward_pass`` on ``x`` with a sparse forward and backward.

    ``loss.backward()`` fills the same gradients as sae_lens's step (``x`` itself gets none).

    ``select_dtype`` (off by default) computes the dense encoder scores that choose the top-k
    latents in that dtype, e.g. ``torch.bfloat16`` (oneDNN's AVX512-BF16 matmul on CPUs that have
    it is about 3x faster than float32). The chosen latents' pre-activations, the loss and every
    gradient stay in the parameters' dtype, recomputed exactly for the chosen pairs; but where
    two scores at the k-th place differ by less than the low precision resolves, a different
    latent than float32's may be chosen. The auxiliary (dead-latent) selection stays exact.
    """
    cfg = sae.cfg
    batch, d_sae = x.shape[0], cfg.d_sae
    b_dec_in = sae.b_dec if cfg.apply_b_dec_to_input else None
    if select_dtype == sae.W_enc.dtype:
        select_dtype = None
    with torch.no_grad():
        sae_in = x - sae.b_dec if b_dec_in is not None else x
        if cfg.rescale_acts_by_decoder_norm:
            # score = pre * ||W_dec||: fold the norm into the (small) weights, not the big output
            norm = sae.W_dec.norm(dim=-1)
            w_score, b_score = sae.W_enc * norm, sae.b_enc * norm
        else:
            norm = None
            w_score, b_score = sae.W_enc, sae.b_enc
        if isinstance(sae, BatchTopKTrainingSAE):
            operands = (b_score, sae_in, w_score)
            if select_dtype:
                operands = tuple(t.to(select_dtype) for t in operands)
            score = torch.addmm(*operands)  # the one dense matmul
            flat = score.relu_().flatten().topk(int(cfg.k * batch), sorted=False).indices
            flat = flat.sort().values  # row-major: sorted by row, then column
            rows, cols = flat // d_sae, flat % d_sae
            if select_dtype:
                selected = _exact_scores(sae_in, w_score, b_score, _crow(rows, batch), cols)
            else:
                selected = score.view(-1).index_select(0, flat)
        else:
            cols_2d, scores = _encode_top_k(sae_in, w_score, b_score, cfg.k, select_dtype)
            rows = torch.arange(batch, device=x.device).repeat_interleave(cfg.k)
            cols, selected = cols_2d.flatten(), scores.flatten()
        # with decoder-norm rescaling relu(pre * n) / n == relu(pre): decode with the raw pre
        pre_selected = selected / norm.index_select(0, cols) if norm is not None else selected
    recon = _SparseDecode.apply(
        sae_in,
        sae.W_enc,
        sae.b_enc,
        sae.W_dec,
        b_dec_in,
        pre_selected,
        _crow(rows, batch),
        cols,
        True,
    )
    mse_loss, sae_out = _SquaredError.apply(recon, sae.b_dec, x)
    # sae_lens always reports the auxiliary term (zero while no latent is dead)
    losses = {"mse_loss": mse_loss, "auxiliary_reconstruction_loss": mse_loss.new_tensor(0.0)}
    loss = mse_loss
    if dead_neuron_mask is not None and (num_dead := int(dead_neuron_mask.sum())) > 0:
        # sae_lens's TopK auxiliary loss: the top k_aux dead latents reconstruct the residual.
        # (For BatchTopK the ReLU above only zeroed scores of live latents' competitors; dead
        # latents' negative scores matter here, so BatchTopK recomputes them.)
        k_aux = min(x.shape[-1] // 2, num_dead)
        scale = min(num_dead / (x.shape[-1] // 2), 1.0)
        with torch.no_grad():
            dead = dead_neuron_mask.nonzero().flatten()
            w_dead, b_dead = sae.W_enc[:, dead], sae.b_enc[dead]
            if norm is not None:
                w_dead, b_dead = w_dead * norm[dead], b_dead * norm[dead]
            dead_score = torch.addmm(b_dead, sae_in, w_dead)
            aux_rows, aux_local = _select_per_row(dead_score, k_aux)
            aux_cols = dead[aux_local]
            aux_pre = dead_score[aux_rows, aux_local]
            if norm is not None:
                aux_pre = aux_pre / norm[aux_cols]
            aux_cols, resort = aux_cols.view(batch, k_aux).sort(dim=-1)
            aux_pre = aux_pre.view(batch, k_aux).gather(1, resort).flatten()
            aux_cols = aux_cols.flatten()
        aux_recon = _SparseDecode.apply(
            sae_in,
            sae.W_enc,
            sae.b_enc,
            sae.W_dec,
            b_dec_in,
            aux_pre,
            _crow(aux_rows, batch),
            aux_cols,
            False,
        )
        aux_error, _ = _SquaredError.apply(aux_recon, None, x - sae_out)
        aux_loss = cfg.aux_loss_coefficient * scale * aux_error
        losses["auxiliary_reconstruction_loss"] = aux_loss
        loss = loss + aux_loss
    acts = selected.relu()  # the SAE's feature activations (with the decoder norm, as sae_lens)
    return FastStepOutput(
        loss=loss, losses=losses, sae_out=sae_out, rows=rows, cols=cols, acts=acts
    )
