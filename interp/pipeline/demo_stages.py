"""The work of each ``vsfa demo`` step: each stage's public function with its typed config.

Every function takes the running demo (:class:`DemoRun`: its config, output folder, world and
loaded models; :class:`interp.pipeline.demo.Demo` is one) and returns the step's outputs, the
paths later steps read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from interp.artifacts import read_json, write_json_atomic, write_text_atomic
from interp.errors import VSFAError
from interp.pipeline.demo_config import DemoConfig
from interp.pipeline.results import latent_scale, pick_latents, results_json
from interp.pipeline.steps import fresh
from interp.pipeline.worlds import World


class DemoRun(Protocol):
    """What a step reads from the running demo."""

    config: DemoConfig
    out: Path
    plugin: World
    echo: Callable[[str], None]

    def base(self) -> Path: ...

    def items(self, per_category: int) -> list[Any]: ...

    def vlm(self, adapter: str | None = None) -> Any: ...


TRAINED = ("vlguard", "control", "vsfa")
TOP = 20  # latents listed by the diff


def vqa_sets(demo: DemoRun, world: dict[str, str]) -> dict[str, Any]:
    from interp.data.vqa import BuildConfig, build_vqa

    out = {}
    for name, images in (("vsfa", world["threat_images"]), ("control", world["benign_images"])):
        path = demo.out / "vqa" / f"{name}.jsonl"
        build_vqa(BuildConfig(images=images, out=str(path), seed=0, quiet=True))
        out[name] = str(path)
    return out


def train(demo: DemoRun, recipe: Any, world: dict[str, str], vqa: dict[str, str]) -> dict[str, Any]:
    """The world's recipe for VSFA and the control, and for the VLGuard baseline, per seed."""
    from interp.train import train as train_run

    runs: dict[str, list[str]] = {method: [] for method in TRAINED}
    for seed in demo.config.seeds:
        for method in TRAINED:
            if method == "vlguard":
                data = {"method": "vlguard", "data": world["vlguard_train"],
                        "image_root": world["vlguard_images"]}  # fmt: skip
            else:
                data = {"data": vqa[method]}
            out = demo.out / "train" / f"{method}-s{seed}"
            # the step reruns only when something upstream changed: replace the old run
            config = replace(
                recipe, model=str(demo.base()), out=str(out), seed=seed,
                device=demo.config.device, quiet=demo.config.quiet, overwrite=True, **data,
            )  # fmt: skip
            runs[method].append(str(train_run(config)))
    return runs


def generation(demo: DemoRun) -> Any:
    """Sampled (or greedy, with ``samples_per_item`` 0) generation of the demo's length."""
    from interp.eval.generation import GenerationConfig

    n = demo.config.samples_per_item
    return GenerationConfig(
        max_new_tokens=demo.config.max_new_tokens, batch_size=demo.config.batch_size,
        do_sample=n > 0, samples_per_item=max(n, 1), temperature=1.0, seed=0,
    )  # fmt: skip


def judge(demo: DemoRun) -> Any:
    from interp.eval.judges import get_judge

    return get_judge(demo.plugin.judge)


def evaluate(demo: DemoRun, runs: dict[str, list[str]]) -> dict[str, Any]:
    """The base, AdaShield and every trained run on the benchmark; the table and results.json."""
    from interp.eval.run import evaluate as evaluate_model
    from interp.eval.table import compare, write_table

    items = demo.items(demo.config.per_category)
    scorer = judge(demo)
    jobs: list[tuple[str, str | None, int | None, str | None]] = [
        ("none", None, None, None),
        ("adashield", None, None, "adashield"),
    ]
    for method in TRAINED:
        jobs += [(method, r, seed, None) for r, seed in zip(runs[method], demo.config.seeds)]
    dirs = []
    for method, adapter, seed, defense in jobs:
        out = demo.out / "eval" / (method if seed is None else f"{method}-s{seed}")
        evaluate_model(
            demo.vlm(adapter), items, out, judge=scorer, generation=generation(demo),
            defense=defense, label={"model": demo.plugin.name, "method": method, "seed": seed},
            force=True,  # the step reruns only when the models changed: no stale results
            overwrite=True, quiet=demo.config.quiet,
        )  # fmt: skip
        dirs.append(out)
    rows = compare(dirs)
    write_table(dirs, demo.out)
    write_json_atomic(demo.out / "results.json", results_json(rows, demo.config.settings()))
    return {
        "results": str(demo.out / "results.json"),
        "table_md": str(demo.out / "table.md"),
        "eval_dirs": [str(d) for d in dirs],
    }


def cache(demo: DemoRun, hook: str, tuned: str, corpus: str | None) -> dict[str, Any]:
    """Base and tuned activations of the benchmark prompts (and of the corpus sample)."""
    from interp.cache import CacheConfig, CachePrompt, cache_activations_for, load_prompts

    prompts = [
        CachePrompt(id=i.key, prompt=i.prompt, image=i.image_path, kind=i.kind, category=i.category)
        for i in demo.items(demo.config.per_category)
    ]
    sources = [(demo.plugin.benchmark, prompts, "")]
    if corpus is not None:
        sources.append((corpus, load_prompts(corpus), "_corpus"))
    out = {}
    for source, source_prompts, suffix in sources:
        for model, adapter in (("base", None), ("tuned", tuned)):
            name = model + suffix
            config = CacheConfig(
                model=str(demo.base()), adapter=adapter, prompts=source, hooks=[hook],
                out=str(fresh(demo.out / "cache" / name)), positions="all",
                device=demo.config.device, quiet=demo.config.quiet,
            )  # fmt: skip
            out[name] = str(cache_activations_for(demo.vlm(adapter), source_prompts, config))
    return out


def sae(
    demo: DemoRun, source: str, recipe: Any, hook: str, caches: dict[str, str]
) -> dict[str, Any]:
    """The given or shipped SAE, or one trained with the recipe on every cache. A given SAE's
    ``metrics.json`` is copied to ``sae/metrics.json`` with its folder, so the report shows the
    SAE the run used beside the rest."""
    if source != "trained":
        shipped = Path(source) / "metrics.json"
        if shipped.is_file():
            metrics = {**read_json(shipped), "sae": source, "trained_in_this_run": False}
            write_json_atomic(demo.out / "sae" / "metrics.json", metrics)
        return {"sae": source}
    from interp.sae import train_sae

    config = replace(
        recipe, acts=list(caches.values()), out=str(fresh(demo.out / "sae")), hook_name=hook,
        device=demo.config.device, quiet=demo.config.quiet,
    )  # fmt: skip
    return {"sae": str(train_sae(config, vlm=demo.vlm()))}


def diff(
    demo: DemoRun, sae: dict[str, str], caches: dict[str, str], selection_ids: Path | None = None
) -> dict[str, Any]:
    """The model diff with the world's latent selection: ``diff/latents.json``; with
    ``selection_ids`` (a file of prompt ids) selected on those prompts only, written beside it."""
    from interp.analysis import diff_latents
    from interp.cache import ActivationStore
    from interp.sae import load_sae

    vlm = demo.vlm()
    selection = replace(demo.plugin.selection(), top=TOP, quiet=demo.config.quiet)
    path = demo.out / "diff" / "latents.json"
    if selection_ids is not None:
        selection = replace(selection, split="ids", selection_ids=str(selection_ids))
        path = selection_ids.parent / "latents.json"
    diff_latents(
        load_sae(sae["sae"], device=demo.config.device),
        ActivationStore(caches["base"]),
        ActivationStore(caches["tuned"]),
        config=selection, tokenizer=vlm.tokenizer, unembedding=vlm.unembedding(), out=path,
        sae_name=sae["sae"],
    )  # fmt: skip
    return {"latents": str(path)}


def steer(
    demo: DemoRun, sae: dict[str, str], latents: dict[str, str], tuned: str
) -> dict[str, Any]:
    """Add the selected latents to the base, ablate them from VSFA: ``steering.json``."""
    from interp.sae import load_sae
    from interp.steer import SteerConfig, steer_sweep

    data = read_json(latents["latents"])
    latent, significant = pick_latents(data)
    if not significant:
        demo.echo(
            f"[demo] no latent passed the significance test; steering the top runner-up "
            f"{latent} (exploratory)"
        )
    model = load_sae(sae["sae"], device=demo.config.device)
    scale = latent_scale(data, latent)
    items = demo.items(demo.config.steer_per_category)
    scorer = judge(demo)
    sweeps = {}
    for mode, adapter, alphas in (
        ("add", None, [round(a * scale, 3) for a in demo.config.alphas]),
        ("ablate", tuned, list(demo.config.ablate_scales)),
    ):
        config = SteerConfig(
            latent=latent, mode=mode, alphas=alphas, n_random=demo.config.n_random,
            diff_of_means=latents["latents"], quiet=demo.config.quiet,
        )  # fmt: skip
        sweeps[mode] = steer_sweep(
            demo.vlm(adapter), items, model, scorer, fresh(demo.out / "steer" / mode), config,
            generation=generation(demo),
        )  # fmt: skip
    combined = {
        "latent": latent,
        "significant": significant,
        "hook_name": data.get("hook_name"),
        "sae": sae["sae"],
        "add_alpha_unit": scale,
        "selected": data.get("selected"),
        "sweeps": sweeps,
    }
    write_json_atomic(demo.out / "steering.json", combined)
    return {"steering": str(demo.out / "steering.json")}


PERSONA_METHODS = ("sae-set/add", "persona-vector/add", "prompting", "sae-set/ablate",
                   "persona-vector/project-out")  # fmt: skip
"""The persona frontier's methods in the demo: the selected set and the persona vector, added to
the base and removed from VSFA, and prompting."""


def persona(demo: DemoRun, sae: dict[str, str], caches: dict[str, str], tuned: str) -> dict:
    """``persona/``: ``vsfa persona extract`` on the base with the world's contexts
    (``persona.json``); the world's latent selection on the cached benchmark prompts that are not
    steering items (``selection.txt``, ``latents.json``); ``vsfa persona score`` of that set, the
    difference of means, the persona vector and the probe against the VSFA run (``score.json``);
    the frontier of :data:`PERSONA_METHODS` on the steering items (``frontier.json``,
    ``frontier.html``), none of which selected the set."""
    from interp.cache import ActivationStore
    from interp.persona.config import ExtractConfig, FrontierConfig, ScoreConfig
    from interp.persona.extract import extract_persona
    from interp.persona.frontier import frontier
    from interp.persona.score import score_candidates
    from interp.pipeline.persona_report import prompting_options

    cfg, folder = demo.config, demo.out / "persona"
    common = {"device": cfg.device, "model_dtype": "float32", "quiet": cfg.quiet, "seed": 0}
    model = str(demo.base())
    # extract replaces the folder: the rest (and the frontier, no stale points) come after it
    extract_persona(ExtractConfig(contexts=demo.plugin.name, model=model, out=str(folder),
                                  **common), force=True)  # fmt: skip
    steering = {item.key for item in demo.items(cfg.steer_per_category)}
    ids = sorted({p["id"] for p in ActivationStore(caches["base"]).prompts} - steering)
    if not ids:
        raise VSFAError("the demo's cache holds no prompt outside the steering items to select "
                        "on; raise --per-category above --steer-per-category")  # fmt: skip
    write_text_atomic(folder / "selection.txt", "".join(f"{i}\n" for i in ids))
    latents = diff(demo, sae, caches, selection_ids=folder / "selection.txt")["latents"]
    score_candidates(ScoreConfig(persona=str(folder), model=model, adapter=tuned, out=str(folder),
                                 sae=sae["sae"], latents=latents, top=TOP, **common))  # fmt: skip
    methods = list(PERSONA_METHODS)
    if not (read_json(latents).get("selected") or {}).get("latents"):
        demo.echo("[demo] the held-out diff selected no latent: the frontier runs no SAE set")
        methods = [m for m in methods if not m.startswith("sae-set/")]
    n = cfg.samples_per_item
    frontier(FrontierConfig(
        model=model, adapter=[tuned], bench=[demo.plugin.benchmark], out=str(folder),
        judge=demo.plugin.judge, persona=str(folder), latents=latents, sae=sae["sae"],
        methods=methods, direction_alphas=list(cfg.persona_alphas), n_random=cfg.persona_random,
        max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size, sample=n > 0,
        samples_per_item=max(n, 1), per_category=cfg.steer_per_category,
        **common, **prompting_options(folder),
    ))  # fmt: skip
    names = ("persona", "score", "frontier", "latents")
    return {name: str(folder / f"{name}.json") for name in names}
