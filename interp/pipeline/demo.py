"""``vsfa demo``: the whole VSFA story on the shipped model organism, on a CPU, in minutes.

Steps (each one skipped when its output is current, :func:`interp.artifacts.output_is_current`):

1. ``world``: the organism's synthetic data (threat / benign images with sidecars, VLGuard set).
2. ``vqa``: the VSFA set (neutral VQA on threat images) and the benign control set.
3. ``train``: VSFA and the benign control (LoRA, ``ORGANISM_RECIPE``) and the VLGuard-style
   baseline, for each seed.
4. ``eval``: the base model, AdaShield (defense prompt on the base), VLGuard, control and VSFA on
   the organism benchmark with the organism judge; ``table.md``/``table.json``/``results.json``.
5. ``cache``: residual activations of the base and the VSFA model on the same prompts.
6. ``sae``: an SAE on those activations (or, with ``--fast``, the SAE shipped in
   ``sae_checkpoints/``).
7. ``diff``: latents ranked by how much VSFA raised them; the persona candidate is selected.
8. ``steer``: add the latent to the base model, ablate it from the VSFA model, over alphas, with
   random-latent controls; ``steering.json``.
9. ``report``: ``report.html`` (:func:`interp.viz.dashboard.write_dashboard`).

Every number in the outputs is computed in the run; nothing is copied from elsewhere.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from interp.artifacts import (
    MANIFEST,
    make_manifest,
    manifest_key,
    output_is_current,
    read_json,
    write_json_atomic,
)
from interp.errors import VSFAError

# (label method, display name); the order is the table's.
METHODS: tuple[tuple[str, str], ...] = (
    ("none", "No defense"),
    ("adashield", "AdaShield"),
    ("vlguard", "VLGuard"),
    ("control", "Benign control"),
    ("vsfa", "VSFA"),
)
TRAINED = ("vlguard", "control", "vsfa")
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class DemoConfig:
    """Settings of one demo run. ``None`` fields take the ``fast`` or the full default.

    Attributes:
        out: output folder.
        fast: the shipped SAE instead of training one, one seed, fewer items and alphas.
        seeds: training seeds of the fine-tuned methods (full: 0, 1; fast: 0).
        per_category: organism benchmark items per category for the evaluation.
        steer_per_category: items per category for each steering point.
        max_new_tokens: generation length (organism answers are short).
        samples_per_item: sampled answers per item (temperature 1); greedy ASR of a model this
            small flips between 0 and 1 per item, sampling gives a graded rate. 0: greedy.
        alphas: steering strengths for ``add``, in units of the latent's largest activation on
            the tuned model (:func:`latent_scale`); ablation uses ``ablate_scales``.
        ablate_scales: fractions of the latent removed from the tuned model.
        n_random: random latent sets in the steering control (full: 8, so the chosen set's rank
            among them can reach p = 1/9; fast: 2).
        sae_steps, sae_width, sae_k, sae_batch_size: overrides of the organism's SAE recipe
            (``interp.organism.ORGANISM_SAE``, the shipped SAE's) for the SAE the full demo
            trains on base and VSFA activations of the benchmark and the world's corpus sample.
        sae: an SAE folder to use instead of training or the shipped one.
        device: ``cpu``, ``cuda`` or ``auto``.
        threads: CPU threads torch uses during the demo (restored after). The organism's
            matrices are tiny, so one thread is as fast as many on an idle machine and much
            faster on a busy one (no oversubscription); ``None`` keeps torch's setting.
        force: rerun every step even when its output is current.
        quiet: no progress bars.
    """

    out: str = "vsfa-demo"
    fast: bool = False
    seeds: list[int] | None = None
    per_category: int | None = None
    steer_per_category: int | None = None
    max_new_tokens: int = 24
    samples_per_item: int | None = None
    alphas: list[float] | None = None
    ablate_scales: list[float] | None = None
    n_random: int | None = None
    sae_steps: int | None = None
    sae_width: int | None = None
    sae_k: int | None = None
    sae_batch_size: int | None = None
    sae: str | None = None
    device: str = "cpu"
    threads: int | None = 1
    force: bool = False
    quiet: bool = False
    batch_size: int = 16
    _timings: dict[str, float] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        fast = self.fast
        if self.seeds is None:
            self.seeds = [0] if fast else [0, 1]
        if self.per_category is None:
            self.per_category = 8 if fast else 24
        if self.steer_per_category is None:
            self.steer_per_category = 4 if fast else 8
        if self.alphas is None:
            self.alphas = [0.0, 0.5, 1.0] if fast else [0.0, 0.25, 0.5, 1.0, 2.0]
        if self.ablate_scales is None:
            self.ablate_scales = [0.0, 1.0] if fast else [0.0, 0.5, 1.0]
        if self.samples_per_item is None:
            self.samples_per_item = 2 if fast else 4
        if self.n_random is None:
            self.n_random = 2 if fast else 8
        if not self.seeds:
            raise VSFAError("--seeds: give at least one seed")
        if self.per_category < 1 or self.steer_per_category < 1:
            raise VSFAError("--per-category must be at least 1")

    def settings(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}


def _need(module: str, stage: str, *names: str) -> Any:
    """Import a stage's module (and check it has ``names``), or a clear error naming what is
    missing: the demo wires every stage, so a partial installation says which part it lacks."""
    try:
        imported = importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name and module.startswith(error.name):
            raise VSFAError(
                f"vsfa demo needs the {stage} stage ({module}), which this installation lacks"
            ) from None
        raise
    missing = [name for name in names if not hasattr(imported, name)]
    if missing:
        raise VSFAError(
            f"vsfa demo needs {', '.join(f'{module}.{n}' for n in missing)} ({stage} stage), "
            "which this installation lacks"
        )
    return imported


class Demo:
    """One demo run: the steps in order, each skipped when current."""

    def __init__(self, config: DemoConfig, echo: Callable[[str], None] = print) -> None:
        self.config = config
        self.out = Path(config.out)
        self.echo = echo
        self.keys: dict[str, str] = {}
        self.paths: dict[str, Any] = {}
        self._vlms: dict[str, Any] = {}
        self.outputs: dict[str, dict[str, Any]] = {}

    # ---- step bookkeeping ---------------------------------------------------------------------
    def step(
        self,
        name: str,
        config: dict[str, Any],
        depends: Sequence[str],
        run: Callable[[], dict[str, Any]],
    ) -> dict[str, Any]:
        """Run ``run`` unless the step's marker says its output is current.

        The marker (``steps/<name>/manifest.json``) holds the step's config, the keys of the
        steps it depends on, and what ``run`` returned (the paths later steps read), so a change
        upstream reruns everything downstream.
        """
        marker = self.out / "steps" / name
        inputs = {dep: self.keys[dep] for dep in depends}
        manifest = make_manifest(f"demo/{name}", config, inputs=inputs)
        self.keys[name] = manifest_key(manifest)
        if not self.config.force and output_is_current(marker, manifest):
            outputs = read_json(marker / MANIFEST).get("outputs", {})
            if all(Path(p).exists() for p in _paths_in(outputs)):
                self.echo(f"[demo] {name}: current, skipped")
                return outputs
        self.echo(f"[demo] {name} ...")
        started = time.time()
        outputs = run()
        seconds = time.time() - started
        self.config._timings[name] = seconds
        manifest.update(complete=True, outputs=outputs, seconds=round(seconds, 2))
        write_json_atomic(marker / MANIFEST, manifest)
        self.echo(f"[demo] {name}: done in {seconds:.0f}s")
        return outputs

    def vlm(self, adapter: str | None = None) -> Any:
        """The organism base model, or with a training run's adapter, loaded once."""
        from interp.models import load_vlm

        key = adapter or ""
        if key not in self._vlms:
            if self.config.quiet:
                import transformers

                transformers.utils.logging.disable_progress_bar()
            self._vlms[key] = load_vlm(
                str(self.base()), adapter=adapter, device=self.config.device,
                dtype="float32",
            )  # fmt: skip
        return self._vlms[key]

    # ---- the pipeline: each public step runs (or skips) what it depends on first ------------
    def run(self) -> dict[str, Any]:
        """All steps in order; returns the paths of results.json, table.md, steering.json and
        report.html, and the seconds each step that ran took."""
        results = self.evaluate()
        steering = self.steer()
        report = self.report()
        return {
            "results": results["results"],
            "table_md": results["table_md"],
            "steering": steering["steering"],
            "report": str(report),
            "timings": dict(self.config._timings),
        }

    def _once(self, name: str, make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        if name not in self.outputs:
            self.outputs[name] = make()
        return self.outputs[name]

    @property
    def organism(self) -> Any:
        return _need(
            "interp.organism", "organism", "base_model_dir", "write_world_data", "ORGANISM_RECIPE"
        )

    def base(self) -> Path:
        """The shipped organism's folder (its file listing keys everything downstream)."""
        if "base" not in self.paths:
            self.out.mkdir(parents=True, exist_ok=True)
            self.paths["base"] = Path(self.organism.base_model_dir())
            self.keys["base"] = _folder_key(self.paths["base"])
        return self.paths["base"]

    def world(self) -> dict[str, Any]:
        """The organism's synthetic data folders (``write_world_data``)."""
        self.base()
        return self._once("world", lambda: self.step("world", {"seed": 0}, ["base"], self._world))

    def vqa(self) -> dict[str, Any]:
        """``vqa/vsfa.jsonl`` (threat images) and ``vqa/control.jsonl`` (benign images)."""
        world = self.world()
        return self._once(
            "vqa", lambda: self.step("vqa", {"seed": 0}, ["world"], lambda: self._vqa(world))
        )

    def train(self) -> dict[str, Any]:
        """Run folders per trained method: ``{"vsfa": [seed runs], "control": ..., ...}``."""
        world, vqa = self.world(), self.vqa()
        config = {"recipe": dict(self.organism.ORGANISM_RECIPE), "seeds": self.config.seeds}
        return self._once(
            "train",
            lambda: self.step("train", config, ["vqa", "world"], lambda: self._train(world, vqa)),
        )

    def evaluate(self) -> dict[str, Any]:
        """Every method on the organism benchmark; ``results.json``, ``table.md``/``.json``."""
        runs = self.train()
        config = {"per_category": self.config.per_category,
                  "max_new_tokens": self.config.max_new_tokens,
                  "samples_per_item": self.config.samples_per_item}  # fmt: skip
        return self._once(
            "eval", lambda: self.step("eval", config, ["train"], lambda: self._evaluate(runs))
        )

    def tuned_run(self) -> str:
        """The VSFA run (first seed) that the cache, diff and ablation use."""
        return self.train()["vsfa"][0]

    def hook(self) -> str:
        return self._hook_name(self._sae_source())

    def cache(self) -> dict[str, Any]:
        """Activation folders ``{"base": ..., "tuned": ...}`` of the benchmark prompts at the
        SAE's hook; when the demo trains its SAE, also ``base_corpus`` / ``tuned_corpus`` of the
        world's corpus sample (the shipped SAE's training data)."""
        world, tuned, hook = self.world(), self.tuned_run(), self.hook()
        corpus = world["corpus_sample"] if self._sae_source() == "trained" else None
        config = {"hook": hook, "tuned": tuned, "per_category": self.config.per_category,
                  "corpus": corpus is not None}  # fmt: skip
        return self._once(
            "cache",
            lambda: self.step(
                "cache", config, ["train", "world"], lambda: self._cache(hook, tuned, corpus)
            ),
        )

    def sae(self) -> dict[str, Any]:
        """``{"sae": folder}``: trained on the caches, or the given / shipped one."""
        caches, source, hook = self.cache(), self._sae_source(), self.hook()
        config = {"source": source, "hook": hook, "recipe": self._sae_recipe()}
        return self._once(
            "sae",
            lambda: self.step("sae", config, ["cache"], lambda: self._sae(source, hook, caches)),
        )

    def diff(self) -> dict[str, Any]:
        """``{"latents": path of latents.json}``."""
        caches, sae = self.cache(), self.sae()
        return self._once(
            "diff",
            lambda: self.step(
                "diff", {"top": 20}, ["cache", "sae"], lambda: self._diff(sae, caches)
            ),  # fmt: skip
        )

    def steer(self) -> dict[str, Any]:
        """``{"steering": path of steering.json}``: add on the base, ablate on VSFA."""
        latents, sae, tuned = self.diff(), self.sae(), self.tuned_run()
        cfg = self.config
        config = {"alphas": cfg.alphas, "ablate_scales": cfg.ablate_scales,
                  "n_random": cfg.n_random, "per_category": cfg.steer_per_category,
                  "max_new_tokens": cfg.max_new_tokens,
                  "samples_per_item": cfg.samples_per_item}  # fmt: skip
        return self._once(
            "steer",
            lambda: self.step("steer", config, ["diff"], lambda: self._steer(sae, latents, tuned)),
        )

    def report(self) -> Path:
        """``report.html``; cheap, so always rewritten to show the folder as it is now."""
        self.echo("[demo] report ...")
        return _write_report(self.out)

    # ---- steps --------------------------------------------------------------------------------
    def _world(self) -> dict[str, Any]:
        paths = self.organism.write_world_data(self.out / "world", seed=0)
        return {key: str(path) for key, path in paths.items()}

    def _vqa(self, world: dict[str, str]) -> dict[str, Any]:
        vqa = _need("interp.data.vqa", "VQA data")
        out = {}
        for name, images in (("vsfa", world["threat_images"]), ("control", world["benign_images"])):
            path = self.out / "vqa" / f"{name}.jsonl"
            vqa.build_vqa(vqa.BuildConfig(images=images, out=str(path), seed=0, quiet=True))
            out[name] = str(path)
        return out

    def _train(self, world: dict[str, str], vqa: dict[str, str]) -> dict[str, Any]:
        train = _need("interp.train", "training", "train")
        config_mod = _need("interp.train.config", "training")
        recipe = dict(self.organism.ORGANISM_RECIPE)
        runs: dict[str, list[str]] = {method: [] for method in TRAINED}
        for seed in self.config.seeds:
            for method in TRAINED:
                fields = {**recipe, "seed": seed, "device": self.config.device,
                          "quiet": self.config.quiet}  # fmt: skip
                if method == "vlguard":
                    fields.update(method="vlguard", data=world["vlguard_train"],
                                  image_root=world["vlguard_images"])  # fmt: skip
                else:
                    fields.update(data=vqa[method])
                out = self.out / "train" / f"{method}-s{seed}"
                # the step reruns only when something upstream changed: replace the old run
                fields.update(model=str(self.paths["base"]), out=str(out), overwrite=True)
                run_dir = train.train(config_mod.TrainConfig.from_dict(fields))
                runs[method].append(str(run_dir))
        return runs

    def items(self, per_category: int) -> list[Any]:
        """The organism benchmark, ``per_category`` items per category (seeded)."""
        benchmarks = _need("interp.data.benchmarks", "eval")
        return benchmarks.load_benchmark("organism", None, per_category=per_category, seed=0)

    def _generation(self) -> Any:
        generation = _need("interp.eval.generation", "eval")
        n = self.config.samples_per_item
        return generation.GenerationConfig(
            max_new_tokens=self.config.max_new_tokens, batch_size=self.config.batch_size,
            do_sample=n > 0, samples_per_item=max(n, 1), temperature=1.0, seed=0,
        )  # fmt: skip

    def _judge(self) -> Any:
        _need("interp.eval.judges", "eval")
        judging = _need("interp.eval.judging", "eval")
        with contextlib.suppress(ModuleNotFoundError):  # else get_judge names the known ones
            importlib.import_module("interp.organism.judge")
        return judging.get_judge("organism")

    def _evaluate(self, runs: dict[str, list[str]]) -> dict[str, Any]:
        run = _need("interp.eval.run", "eval")
        table = _need("interp.eval.table", "eval")
        items = self.items(self.config.per_category)
        judge = self._judge()
        jobs: list[tuple[str, str | None, int | None, str | None]] = [
            ("none", None, None, None),
            ("adashield", None, None, "adashield"),
        ]
        for method in TRAINED:
            jobs += [(method, r, seed, None) for r, seed in zip(runs[method], self.config.seeds)]
        dirs = []
        for method, adapter, seed, defense in jobs:
            out = self.out / "eval" / (method if seed is None else f"{method}-s{seed}")
            run.evaluate(
                self.vlm(adapter),
                items,
                out,
                judge=judge,
                generation=self._generation(),
                defense=defense,
                label={"model": "organism", "method": method, "seed": seed},
                force=True,  # the step reruns only when the models changed: no stale results
                overwrite=True,
                quiet=self.config.quiet,
            )
            dirs.append(out)
        rows = table.compare(dirs)
        table.write_table(dirs, self.out)
        results = results_json(rows, settings=self.config.settings())
        write_json_atomic(self.out / "results.json", results)
        return {
            "results": str(self.out / "results.json"),
            "table_md": str(self.out / "table.md"),
            "eval_dirs": [str(d) for d in dirs],
        }

    def _sae_source(self) -> str:
        """``trained`` or the folder of the SAE to use (``--sae``, or shipped with ``--fast``)."""
        if self.config.sae:
            return str(Path(self.config.sae).resolve())
        if self.config.fast:
            try:
                return str(shipped_sae_dir())
            except VSFAError as error:  # still a working demo: train a small SAE instead
                if not getattr(self, "_warned_sae", False):
                    self.echo(f"[demo] {error}; training a small SAE instead")
                    self._warned_sae = True
        return "trained"

    def _hook_name(self, sae_source: str) -> str:
        if sae_source != "trained":
            cfg = read_json(Path(sae_source) / "cfg.json")
            hook = cfg.get("hook_name") or (cfg.get("metadata") or {}).get("hook_name")
            if not hook:
                raise VSFAError(f"{sae_source}/cfg.json names no hook_name")
            return str(hook)
        organism = _need("interp.organism", "organism")
        hook = getattr(organism, "ORGANISM_HOOK", None)
        if hook:
            return str(hook)
        vlm = self.vlm()
        return vlm.hook_name(vlm.n_layers // 2)

    def _cache_prompts(self) -> list[Any]:
        cache = _need("interp.hooks.cache", "activation cache")
        items = self.items(self.config.per_category)
        return [
            cache.CachePrompt(
                id=i.key, prompt=i.prompt, image=i.image_path, kind=i.kind, category=i.category
            )  # fmt: skip
            for i in items
        ]

    def _cache(self, hook: str, tuned: str, corpus: str | None) -> dict[str, Any]:
        cache = _need("interp.hooks.cache", "activation cache", "load_prompts")
        sources = [("organism", self._cache_prompts(), "")]
        if corpus is not None:
            sources.append((corpus, cache.load_prompts(corpus), "_corpus"))
        out = {}
        for source, prompts, suffix in sources:
            for model, adapter in (("base", None), ("tuned", tuned)):
                name = model + suffix
                _fresh(self.out / "cache" / name)
                config = cache.CacheConfig(
                    model=str(self.paths["base"]), adapter=adapter, prompts=source,
                    hooks=[hook], out=str(self.out / "cache" / name), positions="all",
                    device=self.config.device, quiet=self.config.quiet,
                )  # fmt: skip
                out[name] = str(cache.cache_activations_for(self.vlm(adapter), prompts, config))
        return out

    def _sae_recipe(self) -> dict[str, Any]:
        """``ORGANISM_SAE`` with this config's overrides."""
        cfg = self.config
        overrides = {"steps": cfg.sae_steps, "width": cfg.sae_width, "k": cfg.sae_k,
                     "batch_size": cfg.sae_batch_size}  # fmt: skip
        recipe = dict(getattr(self.organism, "ORGANISM_SAE", {}))
        recipe.update({key: value for key, value in overrides.items() if value is not None})
        recipe.setdefault("arch", "topk")
        if "width" not in recipe:
            recipe["width"] = 8 * self.vlm().d_model
        return recipe

    def _sae(self, source: str, hook: str, caches: dict[str, str]) -> dict[str, Any]:
        if source != "trained":
            return {"sae": source}
        sae = _need("interp.sae", "SAE", "SAETrainConfig", "train_sae")
        _fresh(self.out / "sae")
        config = sae.SAETrainConfig(
            acts=list(caches.values()), out=str(self.out / "sae"), hook_name=hook,
            device=self.config.device, quiet=self.config.quiet, **self._sae_recipe(),
        )  # fmt: skip
        return {"sae": str(sae.train_sae(config, vlm=self.vlm()))}

    def _diff(self, sae: dict[str, str], caches: dict[str, str]) -> dict[str, Any]:
        analysis = _need("interp.analysis", "latent diff", "diff_latents")
        sae_mod = _need("interp.sae", "SAE", "load_sae")
        cache = _need("interp.hooks.cache", "activation cache", "ActivationStore")
        vlm = self.vlm()
        path = self.out / "diff" / "latents.json"
        analysis.diff_latents(
            sae_mod.load_sae(sae["sae"], device=self.config.device),
            cache.ActivationStore(caches["base"]),
            cache.ActivationStore(caches["tuned"]),
            tokenizer=vlm.tokenizer, unembedding=vlm.unembedding(), out=path,
            sae_name=sae["sae"], top=20, quiet=self.config.quiet,
            **getattr(self.organism, "ORGANISM_SELECTION", {}),
        )  # fmt: skip
        return {"latents": str(path)}

    def _steer(self, sae: dict[str, str], latents: dict[str, str], tuned: str) -> dict[str, Any]:
        steer = _need("interp.steer", "steering", "steer_sweep")
        sae_mod = _need("interp.sae", "SAE", "load_sae")
        data = read_json(latents["latents"])
        latent, significant = pick_latents(data)
        if not significant:
            self.echo(
                f"[demo] no latent passed the significance test; steering the top runner-up "
                f"{latent} (exploratory)"
            )
        model = sae_mod.load_sae(sae["sae"], device=self.config.device)
        scale = latent_scale(data, latent)
        items = self.items(self.config.steer_per_category)
        judge = self._judge()
        sweeps = {}
        for mode, adapter, alphas in (
            ("add", None, [round(a * scale, 3) for a in self.config.alphas]),
            ("ablate", tuned, list(self.config.ablate_scales)),
        ):
            _fresh(self.out / "steer" / mode)
            sweeps[mode] = steer.steer_sweep(
                self.vlm(adapter), items, model, latent, mode, alphas, judge,
                self.out / "steer" / mode, n_random=self.config.n_random,
                generation=self._generation(), diff_of_means=latents["latents"],
                quiet=self.config.quiet,
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
        write_json_atomic(self.out / "steering.json", combined)
        return {"steering": str(self.out / "steering.json")}


def pick_latent(latents: dict[str, Any]) -> tuple[int, bool]:
    """The latent to look at: the top selected one, else (flagged) the top runner-up."""
    chosen, significant = pick_latents(latents)
    return (chosen if isinstance(chosen, int) else chosen[0]), significant


def pick_latents(latents: dict[str, Any]) -> tuple[int | list[int], bool]:
    """What to steer: the selected latent, or the selected set when the diff picked several;
    else (flagged) the top runner-up."""
    from interp.steer.interventions import as_latents

    selected = latents.get("selected") or {}
    if selected.get("latents"):
        return as_latents(selected["latents"]), True
    if selected.get("runners_up"):
        return int(selected["runners_up"][0]), False
    raise VSFAError("latents.json selected no latent and lists no runner-up to steer with")


def latent_scale(latents: dict[str, Any], latent: int | list[int]) -> float:
    """The latent's largest activation on the tuned model (from the diff's histogram; for a set,
    the largest of its latents'), the unit of the ``add`` alphas: alpha 1 adds the latent as
    strongly as VSFA's model ever fires it."""
    values = []
    for index in [latent] if isinstance(latent, int) else latent:
        details = (latents.get("details") or {}).get(str(index)) or {}
        histogram = details.get("histogram") or {}
        values += [float(v) for v in histogram.get("tuned") or histogram.get("base") or []]
    return max(values) if values else 1.0


def _fresh(folder: Path) -> None:
    """Remove a step's old output folder: a step only reruns when its inputs changed, and the
    stages' own resume checks key on paths, not on the weights behind them."""
    if folder.exists():
        shutil.rmtree(folder)


def _paths_in(outputs: Any) -> list[str]:
    """Every filesystem path recorded in a step's outputs (strings that look like paths)."""
    found: list[str] = []
    if isinstance(outputs, dict):
        for value in outputs.values():
            found += _paths_in(value)
    elif isinstance(outputs, list):
        for value in outputs:
            found += _paths_in(value)
    elif isinstance(outputs, str) and os.sep in outputs:
        found.append(outputs)
    return found


def _folder_key(folder: Path) -> str:
    """Cheap identity of a model folder (names, sizes and mtimes), for skip checks."""
    from interp.artifacts import json_sha256

    entries = sorted(
        (str(p.relative_to(folder)), p.stat().st_size, int(p.stat().st_mtime))
        for p in folder.rglob("*")
        if p.is_file()
    )
    return json_sha256(entries)


def shipped_sae_dir() -> Path:
    """The organism SAE that ships in ``sae_checkpoints/`` (the interp.sae helper if there is
    one, else the first folder there with a ``cfg.json``)."""
    try:
        sae = importlib.import_module("interp.sae")
    except ModuleNotFoundError:
        sae = None
    helper = getattr(sae, "shipped_sae_dir", None) or getattr(sae, "organism_sae_dir", None)
    if helper is not None:
        return Path(helper())
    folder = ROOT / "sae_checkpoints"
    found = sorted(p.parent for p in folder.glob("*/cfg.json")) if folder.is_dir() else []
    found.sort(key=lambda p: "organism" not in p.name)  # the organism's SAE first (stable)
    if not found:
        raise VSFAError(f"no shipped organism SAE in {folder}")
    return found[0]


def results_json(rows: Sequence[dict[str, Any]], *, settings: dict[str, Any]) -> dict[str, Any]:
    """``results.json``: one row per method (name, ASR with its 95% CI, over-refusal,
    capability, CS, number of seeds) from :func:`interp.eval.table.compare` rows."""
    names = dict(METHODS)
    out_rows = []
    for row in rows:
        seeds = [s for s in row.get("seeds") or [] if s is not None]
        out_rows.append(
            {
                "name": names.get(row["method"], row["method"]),
                "method": row["method"],
                "model": row.get("model"),
                "asr": row.get("asr"),
                "asr_by_benchmark": row.get("asr_by_benchmark") or {},
                "over_refusal": row.get("over_refusal"),
                "capability": row.get("capability"),
                "cs": row.get("cs"),
                "n_seeds": max(len(seeds), 1),
                "seeds": seeds,
            }
        )
    return {"rows": out_rows, "settings": settings}


def _write_report(out: Path) -> Path:
    from interp.viz.dashboard import write_dashboard

    return write_dashboard(out, out / "report.html", title="VSFA demo on the model organism")


def run_demo(config: DemoConfig, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the demo and print the table, the steering findings and where the report is."""
    from interp.train.trainer import cpu_threads
    from interp.viz.dashboard import steering_findings

    started = time.time()
    with cpu_threads(config.threads):
        result = Demo(config, echo).run()
    echo("")
    echo(Path(result["table_md"]).read_text(encoding="utf-8"))
    echo("Steering:")
    for line in steering_findings(read_json(result["steering"])):
        echo(f"  {line}")
    echo("")
    echo(f"results: {Path(result['results']).resolve()}")
    echo(f"steering: {Path(result['steering']).resolve()}")
    echo(f"report: {Path(result['report']).resolve()}")
    echo(f"total {time.time() - started:.0f}s")
    write_json_atomic(Path(config.out) / "timings.json", result["timings"])
    return result
