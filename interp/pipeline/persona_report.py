"""``vsfa persona report``: the persona analysis end to end on a world's shipped model.

Steps (each skipped when its output is current, :class:`interp.pipeline.steps.Steps`):

1. ``world``, ``vqa``: the world's data and its VSFA set (neutral VQA on threat images);
2. ``train``: VSFA fine-tuning of the base with the world's recipe, one run per seed;
3. ``persona``: ``vsfa persona extract`` on the base with the world's context source (the
   probe requests are split into a fit and a held-out half);
4. ``cache``: base and tuned (first seed) residuals at the shipped SAE's hook, decision
   position, of the fit probes asked cold (they select) and of the benchmark items (held out);
5. ``diff``: the latent diff with the world's selection rule on the fit probes only
   (``selection_ids``), so no benchmark item and no held-out probe selects;
6. ``score``: ``vsfa persona score`` against each seed's tuned model;
7. ``frontier``: ``vsfa persona frontier`` on the benchmark items (none of them selected a
   method), removal methods on every seed, random controls;
8. with ``--twin``: ``twin-train``, ``twin-persona``, ``twin-score`` (and ``mechanism-persona``,
   ``mechanism-score`` when ``--twin-contexts`` differs from ``--contexts``): the share of each
   model's VSFA shift along its own persona vector;
9. ``report``: ``persona_report.json`` (:func:`interp.persona.report.build_report`), always
   rewritten from the steps' outputs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from interp.artifacts import make_manifest, read_json, write_json_atomic, write_text_atomic
from interp.errors import VSFAError
from interp.persona.report import (
    REPORT_FILE,
    build_report,
    cue_activations,
    mechanism,
    mechanism_side,
)
from interp.persona.report_config import ReportConfig
from interp.pipeline.steps import Steps, fresh, world_data
from interp.pipeline.worlds import get_world


def prompting_options(persona: str | Path) -> dict[str, Any]:
    """The frontier's prompting options for a persona folder: in-context prompting when its
    contexts carry their cue in earlier turns (the first vigilant turn, read by the frontier),
    else the vigilant system prompt."""
    from interp.persona.contexts import CONTEXTS_FILE, read_contexts

    vigilant = [c for c in read_contexts(Path(persona) / CONTEXTS_FILE) if c.cue == "vigilant"]
    if any(c.turns for c in vigilant):
        return {"prompting": "in-context"}
    systems = [c.system for c in vigilant if c.system]
    return {"prompting": "system", **({"prompt_system": systems[0]} if systems else {})}


class PersonaReport:
    """One report run: the steps in order, each after what it depends on."""

    def __init__(self, config: ReportConfig, echo: Callable[[str], None] = print) -> None:
        from interp.persona.contexts import CONTEXT_SOURCES

        self.config = config
        self.out = Path(config.out)
        self.world = get_world(config.world)
        self.source = config.contexts or self.world.name
        if not config.contexts and self.source not in CONTEXT_SOURCES:
            raise VSFAError(
                f"world {self.world.name!r} registers no persona context source under its name; "
                "give --contexts"
            )
        self.twin_source = config.twin_contexts or self.source
        self.steps = Steps(self.out, "persona-report", force=config.force, echo=echo)
        self.echo = echo
        self.outputs: dict[str, dict[str, Any]] = {}

    def _step(self, name: str, config: dict, depends: list[str], make: Callable[[], dict]) -> dict:
        if name not in self.outputs:
            self.outputs[name] = self.steps.run(name, config, make, depends)
        return self.outputs[name]

    def _load(self, model: str | Path, adapter: str | None = None) -> Any:
        from interp.models import load_vlm

        return load_vlm(str(model), adapter=adapter, device=self.config.device, dtype="float32")

    # ---- models and data -------------------------------------------------------------------
    def models(self) -> dict[str, str]:
        """The base model folder (and the twin's), keyed by their file listings."""
        if "models" not in self.outputs:
            self.out.mkdir(parents=True, exist_ok=True)
            models = {"base": str(self.world.base_model_dir())}
            if self.config.twin:
                twin = Path(self.config.twin)
                if not (twin / "config.json").is_file():
                    raise VSFAError(f"--twin {twin}: not a model folder (no config.json)")
                models["twin"] = str(twin)
            for name, folder in models.items():
                self.steps.key(name, folder)
            self.outputs["models"] = models
        return self.outputs["models"]

    def vqa(self) -> dict[str, str]:
        """The world's data and ``vqa/vsfa.jsonl`` (neutral VQA on its threat images)."""
        self.models()
        if "world" not in self.outputs:
            self.outputs["world"] = world_data(
                self.steps, self.world, self.out / "world", 0, ["base"]
            )
        data = self.outputs["world"]

        def make() -> dict[str, str]:
            from interp.data.vqa import BuildConfig, build_vqa

            path = self.out / "vqa" / "vsfa.jsonl"
            build_vqa(BuildConfig(images=data["threat_images"], out=str(path), seed=0, quiet=True))
            return {"vsfa": str(path)}

        return self._step("vqa", {"seed": 0}, ["world"], make)

    def train(self, side: str = "base") -> list[str]:
        """VSFA runs of ``side`` (``base`` or ``twin``), one per seed, with the world's recipe."""
        from interp.train import train as train_run

        model, vqa = self.models()[side], self.vqa()["vsfa"]
        recipe = self.world.train_recipe()
        if self.config.max_steps:
            recipe = replace(recipe, max_steps=self.config.max_steps)
        name = "train" if side == "base" else "twin-train"

        def make() -> dict[str, list[str]]:
            runs = []
            for seed in self.config.seeds:
                out = self.out / "train" / f"{side}-s{seed}"
                config = replace(recipe, model=model, data=vqa, out=str(out), seed=seed,
                                 device=self.config.device, quiet=self.config.quiet,
                                 overwrite=True)  # fmt: skip
                runs.append(str(train_run(config)))
            return {"runs": runs}

        config = {"recipe": asdict(recipe), "seeds": self.config.seeds}
        return self._step(name, config, [side, "vqa"], make)["runs"]

    # ---- persona directions and their scores ------------------------------------------------
    def _names(self, side: str, source: str) -> tuple[str, str]:
        """The persona and score steps of ``side`` with ``source``."""
        if side == "twin":
            return "twin-persona", "twin-score"
        if source == self.source:
            return "persona", "score"
        return "mechanism-persona", "mechanism-score"

    def persona(self, side: str = "base", source: str | None = None) -> str:
        """``vsfa persona extract`` on ``side`` with ``source`` (default: ``--contexts``)."""
        source = source or self.source
        name = self._names(side, source)[0]
        model = self.models()[side]

        def make() -> dict[str, str]:
            from interp.persona.config import ExtractConfig
            from interp.persona.extract import extract_persona

            out = self.out / name
            extract_persona(ExtractConfig(
                contexts=source, model=model, out=str(out), n_probes=self.config.n_probes,
                seed=self.config.seed, device=self.config.device, model_dtype="float32",
                quiet=self.config.quiet,
            ), force=True)  # fmt: skip
            return {"persona": str(out)}

        settings = {"contexts": source, "n_probes": self.config.n_probes, "seed": self.config.seed}
        return self._step(name, settings, [side], make)["persona"]

    def scores(self, side: str = "base", source: str | None = None) -> list[str]:
        """``score.json`` of ``side``'s persona folder against each seed's tuned model; the base
        with ``--contexts`` also scores the SAE set and the diffed latents."""
        source = source or self.source
        persona_name, name = self._names(side, source)
        persona, runs, model = self.persona(side, source), self.train(side), self.models()[side]
        depends = [persona_name, "train" if side == "base" else "twin-train"]
        extra: dict[str, Any] = {}
        if name == "score":
            extra = {"sae": self.sae(), "latents": self.diff()}
            depends.append("diff")

        def make() -> dict[str, list[str]]:
            from interp.persona.config import ScoreConfig
            from interp.persona.score import score_candidates

            paths = []
            for seed, run in zip(self.config.seeds, runs):
                out = self.out / name / f"s{seed}"
                score_candidates(ScoreConfig(
                    persona=persona, model=model, adapter=run, out=str(out), top=self.config.top,
                    n_permutations=self.config.n_permutations, seed=self.config.seed,
                    device=self.config.device, model_dtype="float32", quiet=self.config.quiet,
                    **extra,
                ))  # fmt: skip
                paths.append(str(out / "score.json"))
            return {"scores": paths}

        settings = {"top": self.config.top, "n_permutations": self.config.n_permutations}
        return self._step(name, settings, depends, make)["scores"]

    # ---- the SAE route ------------------------------------------------------------------------
    def sae(self) -> str:
        return str(self.world.shipped_sae())

    def items(self) -> list[Any]:
        from interp.data.benchmarks import load_benchmarks

        return load_benchmarks([self.world.benchmark], self.config.per_category, self.config.seed)

    def cache(self) -> dict[str, str]:
        """Base and first-seed tuned residuals at the SAE's hook, decision position: the fit
        probes asked cold (``selection.txt`` lists them) and the benchmark items."""
        persona, tuned = self.persona(), self.train()[0]

        def make() -> dict[str, str]:
            from interp.cache import CacheConfig, CachePrompt, cache_activations_for
            from interp.persona.extract import read_persona
            from interp.sae import load_sae
            from interp.sae.latents import sae_hook_name

            hook = sae_hook_name(load_sae(self.sae()))
            folder = read_persona(persona)
            fit = set(folder.meta["fit_probe_ids"])
            probes = {c.probe_id: c for c in folder.contexts() if c.probe_id in fit}
            prompts = [CachePrompt(id=pid, prompt=c.probe, kind=c.probe_kind,
                                   category=f"persona-{c.probe_kind}")
                       for pid, c in sorted(probes.items())]  # fmt: skip
            prompts += [CachePrompt(id=i.key, prompt=i.prompt, image=i.image_path, kind=i.kind,
                                    category=i.category) for i in self.items()]  # fmt: skip
            selection = self.out / "cache" / "selection.txt"
            write_text_atomic(selection, "".join(f"{pid}\n" for pid in sorted(probes)))
            out = {"selection": str(selection)}
            for name, adapter in (("base", None), ("tuned", tuned)):
                config = CacheConfig(
                    model=self.models()["base"], adapter=adapter, prompts="persona-report",
                    hooks=[hook], out=str(fresh(self.out / "cache" / name)), positions="decision",
                    device=self.config.device, quiet=self.config.quiet,
                )  # fmt: skip
                out[name] = str(cache_activations_for(self._load(config.model, adapter), prompts,
                                                      config))  # fmt: skip
            return out

        settings = {"sae": self.sae(), "per_category": self.config.per_category}
        return self._step("cache", settings, ["persona", "train"], make)

    def diff(self) -> str:
        """``diff/latents.json``: the world's selection rule on the fit probes only."""
        caches = self.cache()
        selection = replace(
            self.world.selection(), split="ids", selection_ids=caches["selection"],
            top=max(self.config.top, 1), quiet=self.config.quiet,
        )  # fmt: skip

        def make() -> dict[str, str]:
            from interp.analysis import diff_latents
            from interp.cache import ActivationStore
            from interp.sae import load_sae

            vlm, path = self._load(self.models()["base"]), self.out / "diff" / "latents.json"
            diff_latents(
                load_sae(self.sae()),
                ActivationStore(caches["base"]),
                ActivationStore(caches["tuned"]),
                config=selection, tokenizer=vlm.tokenizer, unembedding=vlm.unembedding(), out=path,
                sae_name=self.sae(),
            )  # fmt: skip
            return {"latents": str(path)}

        settings = {"selection": asdict(selection)}
        return self._step("diff", settings, ["cache"], make)["latents"]

    # ---- the frontier -------------------------------------------------------------------------
    def frontier(self) -> str:
        """``frontier/frontier.json`` on the benchmark items, every seed's tuned model."""
        from interp.persona.config import FRONTIER_METHODS, FrontierConfig

        persona, runs, latents = self.persona(), self.train(), self.diff()
        cfg = self.config
        methods = cfg.methods
        if not (read_json(latents).get("selected") or {}).get("latents"):
            self.echo("[persona-report] the diff selected no latent: the frontier runs no SAE set")
            methods = [m for m in methods or FRONTIER_METHODS if not m.startswith("sae-set/")]
        config = FrontierConfig(
            model=self.models()["base"], adapter=runs, bench=[self.world.benchmark],
            out=str(self.out / "frontier"), judge=self.world.judge, persona=persona,
            latents=latents, sae=self.sae(), methods=methods,
            direction_alphas=cfg.direction_alphas, sae_alphas=cfg.sae_alphas,
            n_random=cfg.n_random, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size,
            sample=cfg.sample, per_category=cfg.per_category, seed=cfg.seed, n_boot=cfg.n_boot,
            device=cfg.device, model_dtype="float32", quiet=cfg.quiet, **prompting_options(persona),
        )  # fmt: skip

        def make() -> dict[str, str]:
            from interp.persona.frontier import frontier

            # the frontier resumes finished points by path: keep them only for the same inputs
            folder, key = self.out / "frontier", self.steps.keys["frontier"]
            marker = folder / "inputs.key"
            if marker.exists() and marker.read_text(encoding="utf-8") != key:
                fresh(folder)
            write_text_atomic(marker, key)
            frontier(config)
            return {"frontier": str(folder / "frontier.json")}

        settings = {k: v for k, v in asdict(config).items() if k not in ("quiet", "out")}
        return self._step("frontier", settings, ["diff", "persona", "train"], make)["frontier"]

    # ---- the mechanism control ----------------------------------------------------------------
    def mechanism(self) -> dict[str, Any] | None:
        """Each model's VSFA shift along its own persona vector (``--twin``), else None."""
        if not self.config.twin:
            return None
        sides = {}
        for side in ("base", "twin"):
            folder = self.persona(side, self.twin_source)
            scores = self.scores(side, self.twin_source)
            meta = read_json(Path(folder) / "persona.json")
            sides[side] = mechanism_side(meta, [read_json(p) for p in scores])
        return mechanism(sides["base"], sides["twin"], self.twin_source)

    # ---- the report ---------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Every step, then ``persona_report.json``; returns its dict."""
        from interp.sae import load_sae

        started = time.time()
        persona, scores, frontier = self.persona(), self.scores(), self.frontier()
        latents = read_json(self.diff())
        block = self.mechanism()
        self.echo("[persona-report] report ...")
        sae = load_sae(self.sae())
        chosen = (latents.get("selected") or {}).get("latents") or []
        cue = cue_activations(self._load(self.models()["base"]), persona, sae=sae, latents=chosen,
                              quiet=self.config.quiet)  # fmt: skip
        manifest = make_manifest(
            "persona.report", {k: v for k, v in asdict(self.config).items() if k != "quiet"},
            seed=self.config.seed, world=self.world.name, contexts=self.source,
            steps=dict(self.steps.keys), timings=dict(self.steps.timings),
            seconds=round(time.time() - started, 1),
            outputs={"persona": persona, "scores": scores, "frontier": frontier,
                     "latents": str(self.diff()), "sae": self.sae()},
        )  # fmt: skip
        report = build_report(
            read_json(Path(persona) / "persona.json"), [read_json(p) for p in scores],
            read_json(frontier), latents, seeds=self.config.seeds, mechanism_block=block,
            cue=cue, manifest=manifest,
        )  # fmt: skip
        write_json_atomic(self.out / REPORT_FILE, report)
        return report


def run_persona_report(config: ReportConfig, echo: Callable[[str], None] = print) -> dict:
    """Run :class:`PersonaReport` (CPU threads as configured) and print its bars."""
    from interp.threads import cpu_threads

    if config.quiet:
        import transformers

        transformers.utils.logging.disable_progress_bar()
    started = time.time()
    with cpu_threads(config.threads):
        report = PersonaReport(config, echo).run()
    for line in report_lines(report):
        echo(line)
    echo(f"wrote {Path(config.out) / REPORT_FILE} in {time.time() - started:.0f}s")
    return report


def _num(value: float | None, points: bool = False) -> str:
    if value is None:
        return "-"
    return f"{100 * value:+.1f} pts" if points else f"{value:.3f}"


def report_lines(report: dict[str, Any]) -> list[str]:
    """One line per method and one per bar."""
    lines = [f"{len(report['selection_items'])} selection items, {len(report['eval_items'])} "
             f"evaluation items (disjoint), seeds {report['seeds']}"]  # fmt: skip
    for name, m in report["methods"].items():
        lines.append(
            f"  {name:>15}: AUROC {_num(m['persona_auroc'])}  cosine {_num(m['cosine_persona'])}"
            f"  shift share {_num(m['vsfa_shift_share'])}"
            f"  add {_num(m['add_asr_change_at_cap5'], True)}"
            f" (p {_num(m['random_rank_p'])})  remove {_num(m['ablate_asr_change'], True)}"
            f" (p {_num(m['ablate_random_rank_p'])})"
        )  # fmt: skip
    for name, bar in report["bars"].items():
        if "met" in bar:
            state = {True: "met", False: "NOT met", None: "not measured"}[bar["met"]]
            value = _num(bar["value"], points=bar.get("unit") == "ASR change")
            lines.append(f"  bar {name}: {value} ({state})")
    return lines
