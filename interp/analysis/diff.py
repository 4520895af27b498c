"""Model diffing in SAE latent space: which latents did fine-tuning raise (or lower)?

Given one SAE and the same prompts cached from a base and a tuned model, :func:`diff_latents`
computes per latent the mean activation and firing frequency on each side, their change, and a
paired significance test across prompts (each prompt's mean activation in the base and the tuned
cache form a pair). It then picks the candidate persona latent(s) by a documented rule
(:func:`select_latents`), collects evidence for the top latents (top-activating tokens in
context from both caches, activation histograms, the tokens the decoder direction promotes and
suppresses through the unembedding) and a difference-of-means direction as a non-SAE baseline.

Significance: a paired t-test over prompts (scipy, vectorised over latents), or a sign-flip
permutation test (``test="permutation"``, also the fallback when scipy is missing); p-values are
adjusted for the number of latents tested with Benjamini-Hochberg (``p_adjusted``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from interp.errors import VSFAError

HARMFUL, BENIGN = "harmful", "benign"


class ActivationSource(Protocol):
    """What diffing reads from an activation folder (``interp.hooks.cache.ActivationStore``)."""

    manifest: dict[str, Any]

    def load(self, hook_name: str) -> torch.Tensor: ...

    @property
    def tokens(self) -> dict[str, torch.Tensor]: ...

    @property
    def prompts(self) -> list[dict[str, Any]]: ...


@dataclass
class DiffConfig:
    """Options of :func:`diff_latents`.

    Attributes:
        top: how many most-increased latents to list (and ``top // 2`` most decreased).
        hook_name: the cached hook to read; default the SAE's own hook.
        test: ``ttest`` (paired t-test, scipy), ``wilcoxon`` (signed-rank, scipy) or
            ``permutation`` (sign-flip, no scipy needed).
        n_permutations: permutations of the sign-flip test.
        alpha: significance level on Benjamini-Hochberg adjusted p-values.
        n_select: how many latents the selection rule picks; ``n_runners_up`` reported beside.
        benign_penalty: weight of the increase on benign prompts subtracted in the selection
            score (1: prefer latents that rose on harmful prompts only; 0: rank by harmful rise).
        n_examples: top-activating tokens per latent and side.
        context_tokens: tokens of context left of an example token (a quarter of it right).
        n_logit_tokens: promoted / suppressed tokens listed per latent.
        histogram_values: most nonzero activations kept per latent and side for histograms.
        batch_rows: rows encoded at a time.
        seed: seeds the permutation test and the histogram subsample.
    """

    top: int = 20
    hook_name: str | None = None
    test: str = "ttest"
    n_permutations: int = 2000
    alpha: float = 0.05
    n_select: int = 1
    n_runners_up: int = 5
    benign_penalty: float = 1.0
    n_examples: int = 8
    context_tokens: int = 12
    n_logit_tokens: int = 10
    histogram_values: int = 256
    batch_rows: int = 4096
    seed: int = 0
    quiet: bool = False

    def validate(self) -> None:
        if self.test not in ("ttest", "wilcoxon", "permutation"):
            raise VSFAError(f"--test {self.test!r}: expected ttest, wilcoxon or permutation")
        if self.top < 1 or self.n_select < 1:
            raise VSFAError("--top and --select must be at least 1")
        if not 0 < self.alpha < 1:
            raise VSFAError(f"--alpha {self.alpha}: expected a level between 0 and 1")
        if not self.benign_penalty >= 0:
            raise VSFAError(f"--benign-penalty {self.benign_penalty}: expected a weight >= 0")


# ---- reading and encoding ----------------------------------------------------------------------
def _chunks(store: ActivationSource, hook: str, rows: int) -> Iterator[torch.Tensor]:
    if hasattr(store, "iter_shards"):  # bounded memory on the on-disk store
        for shard in store.iter_shards(hook):
            yield from shard.split(rows)
    else:
        yield from store.load(hook).split(rows)


@torch.no_grad()
def _encode_stats(
    sae: Any, store: ActivationSource, hook: str, prompt_rows: torch.Tensor, n_prompts: int, cfg
) -> dict[str, torch.Tensor]:
    """Token-level sums and firing counts, and per-prompt sums, of every latent."""
    d_sae = int(sae.cfg.d_sae)
    device = sae.W_dec.device
    total = torch.zeros(d_sae, dtype=torch.float64)
    fired = torch.zeros(d_sae, dtype=torch.float64)
    per_prompt = torch.zeros(n_prompts, d_sae, dtype=torch.float64)
    start = 0
    bar = tqdm(total=len(prompt_rows), disable=cfg.quiet, desc="encode", unit="tok")
    for chunk in _chunks(store, hook, cfg.batch_rows):
        acts = sae.encode(chunk.to(device=device, dtype=sae.W_dec.dtype)).double().cpu()
        index = prompt_rows[start : start + len(acts)]
        start += len(acts)
        bar.update(len(acts))
        total += acts.sum(0)
        fired += (acts > 0).sum(0)
        per_prompt.index_add_(0, index, acts)
    bar.close()
    rows = start
    counts = torch.bincount(prompt_rows, minlength=n_prompts).clamp(min=1).double()
    return {
        "mean": total / max(rows, 1),
        "freq": fired / max(rows, 1),
        "prompt_mean": per_prompt / counts[:, None],
        "rows": torch.tensor(rows),
    }


@torch.no_grad()
def _encode_columns(
    sae: Any, store: ActivationSource, hook: str, latents: list[int], rows: int
) -> torch.Tensor:
    """Activations of a few latents on every row, ``[rows, len(latents)]``."""
    device = sae.W_dec.device
    parts = [
        sae.encode(chunk.to(device=device, dtype=sae.W_dec.dtype))[:, latents].float().cpu()
        for chunk in _chunks(store, hook, rows)
    ]
    return torch.cat(parts) if parts else torch.zeros(0, len(latents))


@torch.no_grad()
def _mean_activation(store: ActivationSource, hook: str, rows: int) -> torch.Tensor:
    total, count = None, 0
    for chunk in _chunks(store, hook, rows):
        part = chunk.double().sum(0)
        total = part if total is None else total + part
        count += len(chunk)
    if total is None:
        raise VSFAError("activation folder holds no rows")
    return (total / count).float()


# ---- statistics --------------------------------------------------------------------------------
def paired_test(
    base: np.ndarray,
    tuned: np.ndarray,
    *,
    test: str = "ttest",
    n_permutations: int = 2000,
    seed: int = 0,
) -> np.ndarray:
    """Two-sided p-value per column for paired samples ``[n_pairs, n_columns]``.

    Differences within float rounding of zero count as zero. A column whose differences do not
    vary gets p = 1 when they are all zero (no change) and p = 0 when they are one nonzero
    constant (every prompt moved by the same amount).
    """
    diff = tuned - base
    tolerance = 1e-6 * (1.0 + np.abs(base) + np.abs(tuned))
    diff = np.where(np.abs(diff) <= tolerance, 0.0, diff)
    n = diff.shape[0]
    if n < 2:
        return np.ones(diff.shape[1])
    varying = diff.std(0) > 1e-12 * (1.0 + np.abs(diff).max(0))
    p = np.where(np.abs(diff).max(0) > 0, 0.0, 1.0)  # the non-varying columns
    if not varying.any():
        return p
    d = diff[:, varying]
    if test in ("ttest", "wilcoxon"):
        try:
            from scipy import stats
        except ImportError:  # pragma: no cover - scipy is a dependency; keep a fallback anyway
            test = "permutation"
        else:
            with np.errstate(all="ignore"):
                if test == "ttest":
                    result = stats.ttest_1samp(d, 0.0, axis=0)
                else:
                    result = stats.wilcoxon(d, axis=0, zero_method="zsplit")
            p[varying] = np.nan_to_num(result.pvalue, nan=1.0)
            return p
    rng = np.random.default_rng(seed)
    observed = np.abs(d.mean(0))
    exceed = np.zeros(d.shape[1])
    for _ in range(n_permutations):
        signs = rng.choice([-1.0, 1.0], size=(n, 1))
        exceed += np.abs((d * signs).mean(0)) >= observed - 1e-12
    p[varying] = (exceed + 1) / (n_permutations + 1)
    return p


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """False-discovery-rate adjusted p-values (monotone, capped at 1)."""
    m = len(p)
    if m == 0:
        return p
    order = np.argsort(p)
    ranked = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def _effect_size(diff: np.ndarray) -> np.ndarray:
    """Cohen's d_z of paired differences (mean / sd; 0 when there is no variation)."""
    sd = diff.std(0, ddof=1) if diff.shape[0] > 1 else np.zeros(diff.shape[1])
    mean = diff.mean(0)
    with np.errstate(all="ignore"):
        d = np.where(sd > 0, mean / np.where(sd > 0, sd, 1), 0.0)
    return d


@dataclass
class SubsetStats:
    """Paired per-prompt statistics of every latent on one subset of prompts."""

    n: int
    delta: np.ndarray
    p_value: np.ndarray
    p_adjusted: np.ndarray
    effect_size: np.ndarray


def _subset_stats(base: np.ndarray, tuned: np.ndarray, rows: np.ndarray, cfg) -> SubsetStats:
    b, t = base[rows], tuned[rows]
    p = paired_test(b, t, test=cfg.test, n_permutations=cfg.n_permutations, seed=cfg.seed)
    return SubsetStats(
        n=len(rows),
        delta=(t - b).mean(0) if len(rows) else np.zeros(base.shape[1]),
        p_value=p,
        p_adjusted=benjamini_hochberg(p),
        effect_size=_effect_size(t - b),
    )


# ---- selection ---------------------------------------------------------------------------------
SELECTION_RULE = (
    "candidates: latents whose per-prompt mean activation rose significantly on harmful prompts "
    "(paired test, Benjamini-Hochberg adjusted p < {alpha}); score = increase on harmful "
    "prompts - {penalty} x max(0, increase on benign prompts); highest score first"
)
SELECTION_RULE_ALL = (
    "no harmful/benign split in the prompts: candidates are latents whose per-prompt mean "
    "activation rose significantly over all prompts (paired test, BH-adjusted p < {alpha}); "
    "score = increase; highest first"
)


def select_latents(
    stats: dict[str, SubsetStats],
    *,
    alpha: float = 0.05,
    n_select: int = 1,
    n_runners_up: int = 5,
    benign_penalty: float = 1.0,
) -> dict[str, Any]:
    """Pick the candidate persona latent(s) (rule in ``SELECTION_RULE``) and the runners-up.

    ``stats`` maps ``harmful`` / ``benign`` / ``all`` to that subset's paired statistics. When
    nothing is significant, ``latents`` is empty and the runners-up are the largest increases
    (for inspection, not for steering claims).
    """
    harmful = stats.get(HARMFUL)
    if harmful is not None and harmful.n >= 2:
        benign = stats.get(BENIGN)
        penalty = np.maximum(benign.delta, 0) if benign is not None and benign.n else 0.0
        score = harmful.delta - benign_penalty * penalty
        candidate = (harmful.delta > 0) & (harmful.p_adjusted < alpha)
        rule = SELECTION_RULE.format(alpha=alpha, penalty=benign_penalty)
    else:
        overall = stats["all"]
        score = overall.delta.copy()
        candidate = (overall.delta > 0) & (overall.p_adjusted < alpha)
        rule = SELECTION_RULE_ALL.format(alpha=alpha)
    order = np.argsort(-score, kind="stable")
    ranked = [int(i) for i in order if candidate[i]]
    selected = ranked[:n_select]
    runners = ranked[n_select : n_select + n_runners_up]
    if len(runners) < n_runners_up:  # fill with the best non-significant ones, flagged below
        rest = [int(i) for i in order if int(i) not in selected and int(i) not in runners]
        runners += rest[: n_runners_up - len(runners)]
    return {
        "rule": rule,
        "latents": selected,
        "runners_up": runners,
        "scores": {str(i): float(score[i]) for i in selected + runners},
        "significant": {str(i): bool(candidate[i]) for i in selected + runners},
    }


# ---- evidence ----------------------------------------------------------------------------------
def _token_text(tokenizer: Any, token_id: int) -> str:
    if tokenizer is None:
        return f"<{token_id}>"
    return tokenizer.decode([int(token_id)], skip_special_tokens=False)


class _Contexts:
    """Turns a cached row into ``(token, context, token_start, token_end)``."""

    def __init__(self, store: ActivationSource, tokenizer: Any, width: int) -> None:
        self.tokens = store.tokens
        self.prompts = store.prompts
        self.tokenizer = tokenizer
        self.width = width
        self._piece: dict[int, str] = {}

    def piece(self, token_id: int, part: int | None = None) -> str:
        if part == 0:
            return "<image>"
        if token_id not in self._piece:
            self._piece[token_id] = _token_text(self.tokenizer, token_id)
        return self._piece[token_id]

    def __call__(self, row: int) -> dict[str, Any]:
        prompt_index = int(self.tokens["prompt_index"][row])
        position = int(self.tokens["position"][row])
        token_id = int(self.tokens["token_id"][row])
        part = int(self.tokens["part"][row]) if "part" in self.tokens else None
        prompt = self.prompts[prompt_index] if prompt_index < len(self.prompts) else {}
        ids = prompt.get("token_ids") or []
        token = self.piece(token_id, part)
        before, after = "", ""  # token ids not recorded: the token alone
        if position < len(ids) and int(ids[position]) == token_id:
            left = self._collapse(ids[max(0, position - self.width) : position])
            right = self._collapse(ids[position + 1 : position + 1 + max(1, self.width // 4)])
            if self.tokenizer is not None and part != 0:
                # decode the window as a whole, so word-level and SentencePiece tokenizers
                # keep their spaces; the token is what its id adds to the decoded prefix
                before = self._decode(left)
                upto = self._decode([*left, token_id])
                full = self._decode([*left, token_id, *right])
                if upto.startswith(before) and full.startswith(upto) and len(upto) > len(before):
                    token, after = upto[len(before) :], full[len(upto) :]
                else:
                    before, after = "", ""
            if not before and not after:
                before = "".join(self.piece(i) for i in left)
                after = "".join(self.piece(i) for i in right)
        return {
            "prompt_id": prompt.get("id", str(prompt_index)),
            "prompt": prompt.get("prompt", ""),
            "image": prompt.get("image"),
            "token": token,
            "context": before + token + after,
            "token_start": len(before),
            "token_end": len(before) + len(token),
        }

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)

    def _collapse(self, ids: Sequence[int]) -> list[int]:
        """Token ids, with runs of one repeated special token (image patches) kept once."""
        kept: list[int] = []
        previous = None
        for token_id in ids:
            token_id = int(token_id)
            if token_id == previous and self._is_special(token_id):
                continue
            kept.append(token_id)
            previous = token_id
        return kept

    def _is_special(self, token_id: int) -> bool:
        special = getattr(self.tokenizer, "all_special_ids", None) or []
        ids = getattr(self, "_special", None)
        if ids is None:
            ids = self._special = set(special) | self._image_ids()
        return token_id in ids

    def _image_ids(self) -> set[int]:
        parts = self.tokens.get("part")
        if parts is None:
            return set()
        return set(self.tokens["token_id"][parts == 0].unique().tolist())


def _top_examples(
    values: torch.Tensor, contexts: _Contexts, source: str, n: int
) -> list[dict[str, Any]]:
    if values.numel() == 0:
        return []
    best = torch.topk(values, min(n, len(values)))
    examples = []
    for value, row in zip(best.values.tolist(), best.indices.tolist()):
        if value <= 0:
            break
        examples.append({"source": source, **contexts(int(row)), "activation": round(value, 5)})
    return examples


def _histogram(values: torch.Tensor, keep: int, seed: int) -> list[float]:
    nonzero = values[values > 0]
    if len(nonzero) > keep:
        g = torch.Generator().manual_seed(seed)
        nonzero = nonzero[torch.randperm(len(nonzero), generator=g)[:keep]]
    return [round(float(v), 5) for v in nonzero.sort().values]


def logit_effect(
    direction: torch.Tensor, unembedding: torch.Tensor, tokenizer: Any, n: int = 10
) -> dict[str, list[list[Any]]]:
    """Tokens a residual direction promotes / suppresses through the unembedding (direct path)."""
    logits = unembedding.float().to(direction.device) @ direction.float()
    top = torch.topk(logits, min(n, len(logits)))
    bottom = torch.topk(-logits, min(n, len(logits)))
    return {
        "promoted": [
            [_token_text(tokenizer, i), round(v, 5)]
            for v, i in zip(top.values.tolist(), top.indices.tolist())
        ],
        "suppressed": [
            [_token_text(tokenizer, i), round(-v, 5)]
            for v, i in zip(bottom.values.tolist(), bottom.indices.tolist())
        ],
    }


# ---- the diff ----------------------------------------------------------------------------------
def _pair_prompts(
    base: ActivationSource, tuned: ActivationSource
) -> tuple[list[int], list[int], list[str]]:
    """Indices of the same prompts in both caches (matched by prompt id), and their kinds."""

    def key(prompt: dict[str, Any], position: int) -> str:
        return str(prompt.get("id", prompt.get("index", position)))

    tuned_at = {key(p, i): int(p.get("index", i)) for i, p in enumerate(tuned.prompts)}
    base_rows, tuned_rows, kinds = [], [], []
    for i, prompt in enumerate(base.prompts):
        k = key(prompt, i)
        if k in tuned_at:
            base_rows.append(int(prompt.get("index", i)))
            tuned_rows.append(tuned_at[k])
            kinds.append(str(prompt.get("kind") or ""))
    if len(base_rows) < 2:
        raise VSFAError(
            f"the base and tuned caches share {len(base_rows)} prompt id(s); cache the same "
            "prompts from both models (vsfa cache --prompts ... for each)"
        )
    return base_rows, tuned_rows, kinds


def _resolve_hook(sae: Any, stores: Sequence[ActivationSource], hook_name: str | None) -> str:
    from interp.steer.interventions import sae_hook_name

    hooks = [list(store.manifest.get("hook_names", [])) for store in stores]
    if hook_name is None:
        try:
            hook_name = sae_hook_name(sae)
        except VSFAError:
            if len(hooks[0]) != 1:
                raise VSFAError(
                    f"the SAE does not record its hook and the cache holds {hooks[0]}; pass --hook"
                ) from None
            hook_name = hooks[0][0]
    for store, names in zip(stores, hooks):
        if names and hook_name not in names:
            where = getattr(store, "path", "the activation folder")
            raise VSFAError(f"{where} has no activations for {hook_name!r}; it holds {names}")
        d_model = store.manifest.get("d_model")
        if d_model is not None and int(d_model) != int(sae.cfg.d_in):
            where = getattr(store, "path", "the activation folder")
            raise VSFAError(
                f"{where}: activations have d_model {d_model}, the SAE reads {sae.cfg.d_in}"
            )
    return hook_name


def diff_latents(
    sae: Any,
    base: ActivationSource,
    tuned: ActivationSource,
    *,
    config: DiffConfig | None = None,
    tokenizer: Any = None,
    unembedding: torch.Tensor | None = None,
    out: str | Path | None = None,
    sae_name: str = "",
    **overrides: Any,
) -> dict[str, Any]:
    """Diff an SAE's latents between base and tuned caches of the same prompts.

    Returns the ``latents.json`` dict (schema in ``docs/steering.md``). With ``out`` (a
    ``latents.json`` path) it and ``diff_of_means.safetensors`` beside it are written atomically.
    ``tokenizer`` decodes example tokens and logit effects; ``unembedding`` (``[vocab, d_model]``)
    enables the logit effect.
    """
    cfg = config or DiffConfig()
    for key, value in overrides.items():
        if not hasattr(cfg, key):
            raise TypeError(f"unknown option {key!r}")
        setattr(cfg, key, value)
    cfg.validate()
    hook = _resolve_hook(sae, [base, tuned], cfg.hook_name)
    base_rows, tuned_rows, kinds = _pair_prompts(base, tuned)

    sides = {}
    for name, store in (("base", base), ("tuned", tuned)):
        prompt_index = store.tokens["prompt_index"].long()
        n_prompts = max(len(store.prompts), int(prompt_index.max()) + 1 if len(prompt_index) else 0)
        sides[name] = _encode_stats(sae, store, hook, prompt_index, n_prompts, cfg)
        if int(sides[name]["rows"]) != len(prompt_index):
            raise VSFAError(
                f"the {name} cache has {int(sides[name]['rows'])} activation rows but "
                f"{len(prompt_index)} token rows; the folder is inconsistent"
            )
    base_pm = sides["base"]["prompt_mean"][base_rows].numpy()
    tuned_pm = sides["tuned"]["prompt_mean"][tuned_rows].numpy()

    kinds_arr = np.array(kinds)
    subsets = {"all": np.arange(len(kinds))}
    for kind in (HARMFUL, BENIGN):
        rows = np.flatnonzero(kinds_arr == kind)
        if len(rows):
            subsets[kind] = rows
    stats = {name: _subset_stats(base_pm, tuned_pm, rows, cfg) for name, rows in subsets.items()}
    overall = stats["all"]

    base_mean = sides["base"]["mean"].numpy()
    tuned_mean = sides["tuned"]["mean"].numpy()
    delta = tuned_mean - base_mean
    order = np.argsort(-delta, kind="stable")
    increased = [int(i) for i in order[: cfg.top] if delta[i] > 0]
    decreased = [int(i) for i in order[::-1][: max(1, cfg.top // 2)] if delta[i] < 0]
    selection = select_latents(
        stats,
        alpha=cfg.alpha,
        n_select=cfg.n_select,
        n_runners_up=cfg.n_runners_up,
        benign_penalty=cfg.benign_penalty,
    )

    def row(i: int) -> dict[str, Any]:
        entry = {
            "index": i,
            "base_mean": float(base_mean[i]),
            "tuned_mean": float(tuned_mean[i]),
            "delta": float(delta[i]),
            "base_freq": float(sides["base"]["freq"][i]),
            "tuned_freq": float(sides["tuned"]["freq"][i]),
            "p_value": float(overall.p_value[i]),
            "p_adjusted": float(overall.p_adjusted[i]),
            "effect_size": float(overall.effect_size[i]),
            "direction": "increased" if delta[i] > 0 else "decreased",
        }
        for kind in (HARMFUL, BENIGN):
            if kind in stats:
                entry[f"{kind}_delta"] = float(stats[kind].delta[i])
                entry[f"{kind}_p_adjusted"] = float(stats[kind].p_adjusted[i])
        return entry

    listed = increased + [i for i in decreased if i not in increased]
    detailed = list(dict.fromkeys(selection["latents"] + selection["runners_up"] + listed))
    details = _details(sae, base, tuned, hook, detailed, cfg, tokenizer, unembedding)

    direction = _mean_activation(tuned, hook, cfg.batch_rows) - _mean_activation(
        base, hook, cfg.batch_rows
    )
    result: dict[str, Any] = {
        "sae": sae_name,
        "hook_name": hook,
        "d_sae": int(sae.cfg.d_sae),
        "n_prompts": len(base_rows),
        "n_tokens": int(sides["base"]["rows"]),
        "n_tokens_tuned": int(sides["tuned"]["rows"]),
        "prompt_kinds": {name: len(rows) for name, rows in subsets.items()},
        "test": cfg.test,
        "alpha": cfg.alpha,
        "n_significant_increased": int(
            ((overall.delta > 0) & (overall.p_adjusted < cfg.alpha)).sum()
        ),
        "latents": [row(i) for i in listed],
        "selected": selection,
        "details": details,
        "diff_of_means": {
            "norm": float(direction.norm()),
            "file": "diff_of_means.safetensors",
            # also inline, so a latents.json written by other code still carries the baseline
            "vector": [round(float(v), 7) for v in direction],
        },
        "config": asdict(cfg),
        "sources": {
            "base": str(getattr(base, "path", "")),
            "tuned": str(getattr(tuned, "path", "")),
            "base_model": base.manifest.get("model"),
            "tuned_model": tuned.manifest.get("model"),
            "tuned_adapter": tuned.manifest.get("adapter"),
        },
    }
    if out is not None:
        write_latents(out, result)
    return result


def _details(
    sae: Any,
    base: ActivationSource,
    tuned: ActivationSource,
    hook: str,
    latents: list[int],
    cfg: DiffConfig,
    tokenizer: Any,
    unembedding: torch.Tensor | None,
) -> dict[str, Any]:
    if not latents:
        return {}
    columns = {
        "base": _encode_columns(sae, base, hook, latents, cfg.batch_rows),
        "tuned": _encode_columns(sae, tuned, hook, latents, cfg.batch_rows),
    }
    contexts = {
        "base": _Contexts(base, tokenizer, cfg.context_tokens),
        "tuned": _Contexts(tuned, tokenizer, cfg.context_tokens),
    }
    details: dict[str, Any] = {}
    for column, latent in enumerate(latents):
        examples = []
        for source in ("base", "tuned"):
            examples += _top_examples(
                columns[source][:, column], contexts[source], source, cfg.n_examples
            )
        examples.sort(key=lambda example: -example["activation"])
        entry: dict[str, Any] = {
            "top_examples": examples,
            "histogram": {
                source: _histogram(columns[source][:, column], cfg.histogram_values, cfg.seed)
                for source in ("base", "tuned")
            },
            "logit_effect": None,
        }
        if unembedding is not None:
            direction = sae.W_dec[latent].detach()
            entry["logit_effect"] = logit_effect(
                direction, unembedding.detach(), tokenizer, cfg.n_logit_tokens
            )
        details[str(latent)] = entry
    return details


def write_latents(out: str | Path, result: dict[str, Any]) -> Path:
    """Write ``latents.json`` and ``diff_of_means.safetensors`` beside it (both atomic)."""
    from safetensors.torch import save_file

    from interp.artifacts import atomic_path, write_json_atomic

    out = Path(out)
    if out.suffix != ".json":
        out = out / "latents.json"
    vector = (result.get("diff_of_means") or {}).get("vector")
    if vector is not None:
        direction = torch.tensor(vector, dtype=torch.float32)
        with atomic_path(out.parent / result["diff_of_means"]["file"]) as tmp:
            save_file(
                {"direction": direction.float().contiguous()},
                str(tmp),
                metadata={"hook_name": result["hook_name"]},
            )
    write_json_atomic(out, _finite(result))
    return out


def _finite(value: Any) -> Any:
    """JSON has no NaN/inf; write them as null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def load_diff_of_means(path: str | Path) -> torch.Tensor:
    """The difference-of-means direction of a ``latents.json`` (its safetensors file beside it,
    else the inline vector), or of a ``.safetensors`` file holding ``direction``."""
    from safetensors.torch import load_file

    from interp.artifacts import read_json

    path = Path(path)
    if path.suffix == ".safetensors":
        if not path.exists():
            raise VSFAError(f"{path} does not exist")
        tensors = load_file(str(path))
        if "direction" not in tensors:
            raise VSFAError(f"{path} holds no 'direction' tensor")
        return tensors["direction"]
    data = read_json(path)
    entry = data.get("diff_of_means") or {}
    file = path.parent / entry.get("file", "diff_of_means.safetensors")
    if file.exists():
        return load_file(str(file))["direction"]
    if entry.get("vector") is not None:
        return torch.tensor(entry["vector"], dtype=torch.float32)
    raise VSFAError(f"{path} has no difference-of-means direction (and {file} is missing)")
