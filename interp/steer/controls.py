"""Controls for a steering claim: random latent sets matched to the chosen set, and rank p.

A random latent set controls for "any latents of this kind would do": each chosen latent is
matched to live latents that fire about as often and as strongly. :class:`LatentStats` holds
every latent's firing frequency and mean activation when firing (from activation caches and the
SAE, :func:`latent_stats`); :func:`match_random_latents` draws disjoint sets by nearest-neighbour
matching in (log10 frequency, mean activation), both standardised over the live latents:

* for each chosen latent in turn, the ``pool_factor * n_sets`` nearest live latents not chosen
  and not already drawn form its pool (the matching radius is the distance of the pool's
  farthest member); ``n_sets`` of them are drawn (seeded);
* set ``j`` takes the ``j``-th draw of every chosen latent, so sets are disjoint, never hold a
  chosen latent, and never a dead one (one that never fired in the caches).

:func:`rank_p` (from :mod:`interp.steer.report`, where the sweep ranks with it too) is the
one-sided permutation p of an effect among random controls: ``(1 + #random at least as
extreme) / (1 + n)``; with 19 controls it can reach 0.05.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from interp.errors import VSFAError
from interp.sae.latents import Latents, check_latents
from interp.steer.report import rank_p  # noqa: F401  (the controls' rank, used with them)


@dataclass(frozen=True)
class LatentStats:
    """Per latent: firing frequency (share of cached tokens where it is > 0) and mean activation
    over the tokens where it fires (0 for a dead latent)."""

    freq: np.ndarray
    mean: np.ndarray
    source: str = ""

    @property
    def live(self) -> np.ndarray:
        return self.freq > 0

    def to_dict(self) -> dict[str, Any]:
        return {"freq": self.freq.tolist(), "mean": self.mean.tolist(), "source": self.source}


def _store(source: Any) -> Any:
    if isinstance(source, (str, os.PathLike)):
        from interp.cache import ActivationStore

        if not Path(source).is_dir():
            raise VSFAError(f"activation folder {source} does not exist")
        return ActivationStore(source)
    return source


def latent_stats(
    sae: Any, sources: Sequence[Any], hook: str | None = None, *, batch_rows: int = 4096
) -> LatentStats:
    """Firing frequency and mean activation of every latent of ``sae`` over the cached rows of
    ``sources`` (activation folders or ``ActivationStore`` objects, pooled), at ``hook``
    (default: the SAE's)."""
    from interp.analysis.sources import encode_stats, resolve_hook

    stores = [_store(source) for source in sources]
    if not stores:
        raise VSFAError("latent statistics need at least one activation folder")
    hook = resolve_hook(sae, stores, hook)
    total = fired = rows = 0
    for store in stores:
        index = store.tokens["prompt_index"].long()
        n_prompts = int(index.max()) + 1 if len(index) else 1
        stats = encode_stats(sae, store, hook, index, n_prompts, batch_rows=batch_rows, quiet=True)
        n = int(stats["rows"])
        total = total + stats["mean"].numpy() * n
        fired = fired + stats["freq"].numpy() * n
        rows += n
    if rows == 0:
        raise VSFAError("the activation folders hold no rows")
    freq = np.asarray(fired) / rows
    mean = np.where(fired > 0, np.asarray(total) / np.maximum(fired, 1e-12), 0.0)
    where = ", ".join(str(getattr(s, "path", s)) for s in stores)
    return LatentStats(freq=freq, mean=mean, source=where)


def latent_stats_for(
    sae: Any, latents_file: str | os.PathLike, hook: str | None = None
) -> LatentStats:
    """The statistics behind a ``latents.json``: its ``latent_stats`` table when it has one
    (``freq`` and ``mean`` per latent), else computed from its base and tuned caches."""
    from interp.artifacts import read_json

    data = read_json(latents_file)
    table = data.get("latent_stats")
    if table and table.get("freq") is not None and table.get("mean") is not None:
        freq, mean = np.asarray(table["freq"], float), np.asarray(table["mean"], float)
        if len(freq) != int(sae.cfg.d_sae) or len(mean) != len(freq):
            raise VSFAError(f"{latents_file}: latent_stats do not cover the SAE's latents")
        return LatentStats(freq=freq, mean=mean, source=str(latents_file))
    sources = [(data.get("sources") or {}).get(side) for side in ("base", "tuned")]
    sources = [s for s in sources if s and Path(s).is_dir()]
    if not sources:
        raise VSFAError(
            f"{latents_file}: no latent_stats table and its caches are gone; give the "
            "activation folders to match random latents on"
        )
    return latent_stats(sae, sources, hook or data.get("hook_name"))


@dataclass
class MatchedLatents:
    """Random latent sets matched to ``chosen``: ``sets[j][c]`` was matched to ``chosen[c]``
    within ``radius[c]`` (standardised (log10 freq, mean activation) distance)."""

    chosen: list[int]
    sets: list[list[int]]
    radius: list[float]
    distance: list[list[float]] = field(default_factory=list)
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen, "sets": self.sets, "radius": self.radius,
            "distance": self.distance, "seed": self.seed,
            "rule": "nearest live latents in standardised (log10 firing frequency, mean "
            "activation when firing); disjoint; never chosen, never dead",
        }  # fmt: skip


def _features(stats: LatentStats) -> np.ndarray:
    live = stats.live
    logf = np.log10(np.where(live, stats.freq, 1.0))
    feats = np.stack([logf, stats.mean.astype(float)], axis=1)
    centre = feats[live].mean(0)
    scale = feats[live].std(0)
    return (feats - centre) / np.where(scale > 0, scale, 1.0)


def match_random_latents(
    stats: LatentStats,
    chosen: Latents,
    n_sets: int,
    *,
    seed: int = 0,
    pool_factor: float = 2.0,
    sae: Any = None,
) -> MatchedLatents:
    """``n_sets`` disjoint random latent sets, each matched latent by latent to ``chosen``
    (rule in the module docstring); one clear error when there are too few live latents."""
    picked = (
        check_latents(sae, chosen) if sae is not None else [int(i) for i in np.atleast_1d(chosen)]
    )
    d_sae = len(stats.freq)
    bad = [i for i in picked if not 0 <= i < d_sae]
    if bad:
        raise VSFAError(f"latents {bad} are out of range: the statistics cover {d_sae} latents")
    dead = [i for i in picked if not stats.live[i]]
    if dead:
        raise VSFAError(
            f"chosen latents {dead} never fire in {stats.source or 'the caches'}; cannot match "
            "random latents to them"
        )
    available = stats.live.copy()
    available[picked] = False
    need = n_sets * len(picked)
    if need > int(available.sum()):
        raise VSFAError(
            f"{n_sets} matched random sets of {len(picked)} latents need {need} live latents "
            f"besides the chosen ones; {stats.source or 'the SAE'} has {int(available.sum())} "
            f"({int((~stats.live).sum())} of {d_sae} latents are dead)"
        )
    feats = _features(stats)
    rng = np.random.default_rng(seed)
    draws, radius, distances = [], [], []
    for index in picked:
        candidates = np.flatnonzero(available)
        dist = np.linalg.norm(feats[candidates] - feats[index], axis=1)
        order = np.argsort(dist, kind="stable")
        size = min(len(candidates), max(n_sets, int(np.ceil(pool_factor * n_sets))))
        pool = order[:size]
        taken = rng.choice(pool, size=n_sets, replace=False)
        draws.append([int(candidates[k]) for k in taken])
        distances.append([float(dist[k]) for k in taken])
        radius.append(float(dist[pool[-1]]) if size else 0.0)
        available[candidates[taken]] = False
    sets = [[draw[j] for draw in draws] for j in range(n_sets)]
    per_set = [[column[j] for column in distances] for j in range(n_sets)]
    return MatchedLatents(picked, sets, radius, per_set, seed)
