"""``vsfa demo``: the whole VSFA story on a world's shipped model, on a CPU, in minutes.

Steps (each one skipped when its output is current, :class:`interp.pipeline.steps.Steps`):

1. ``world``: the world's data (threat / benign images with sidecars, VLGuard set, corpus).
2. ``vqa``: the VSFA set (neutral VQA on threat images) and the benign control set.
3. ``train``: VSFA and the benign control (the world's fine-tuning recipe) and the VLGuard-style
   baseline, for each seed.
4. ``eval``: the base model, AdaShield (defense prompt on the base), VLGuard, control and VSFA on
   the world's benchmark with its judge; ``table.md``/``table.json``/``results.json``.
5. ``cache``: residual activations of the base and the VSFA model on the same prompts.
6. ``sae``: an SAE on those activations (or, with ``--fast``, the world's shipped SAE).
7. ``diff``: latents ranked by how much VSFA raised them; the persona candidate is selected.
8. ``steer``: add the latent to the base model, ablate it from the VSFA model, over alphas, with
   random-latent controls; ``steering.json``.
9. ``persona``: the persona analysis in ``persona/``: the persona direction per layer of the base
   on the world's persona contexts (``persona.json``), the candidates scored against the VSFA run
   (``score.json``), and the steering frontier on the steering items with random controls
   (``frontier.json``, ``frontier.html``).
10. ``report``: ``report.html`` (:func:`interp.viz.dashboard.write_dashboard`).

The work of each step is in :mod:`interp.pipeline.demo_stages`. Every number in the outputs is
computed in the run; nothing is copied from elsewhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from interp.artifacts import read_json, write_json_atomic
from interp.errors import VSFAError
from interp.pipeline import demo_stages as stages
from interp.pipeline.demo_config import DemoConfig
from interp.pipeline.results import frontier_headlines, write_report
from interp.pipeline.steps import Steps, world_data
from interp.pipeline.worlds import get_world


class Demo:
    """One demo run: the steps in order, each run (or skipped) after what it depends on."""

    def __init__(self, config: DemoConfig, echo: Callable[[str], None] = print) -> None:
        self.config = config
        self.out = Path(config.out)
        self.plugin = get_world(config.world)
        """the :class:`~interp.pipeline.worlds.World` the demo runs on"""
        self.steps = Steps(self.out, "demo", force=config.force, echo=echo)
        self.echo = echo
        self.outputs: dict[str, dict[str, Any]] = {}
        self._vlms: dict[str, Any] = {}
        self._sae_source: str | None = None

    def vlm(self, adapter: str | None = None) -> Any:
        """The world's base model, or with a training run's adapter, loaded once."""
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

    def items(self, per_category: int) -> list[Any]:
        """The world's benchmark, ``per_category`` items per category (seeded)."""
        from interp.data.benchmarks import load_benchmark

        return load_benchmark(self.plugin.benchmark, None, per_category=per_category, seed=0)

    # ---- the pipeline: each public step runs (or skips) what it depends on first ------------
    def run(self) -> dict[str, Any]:
        """All steps in order; returns the paths of results.json, table.md, steering.json, the
        persona files and report.html, and the seconds each step that ran took."""
        results = self.evaluate()
        steering = self.steer()
        persona = self.persona()
        report = self.report()
        return {
            "results": results["results"],
            "table_md": results["table_md"],
            "steering": steering["steering"],
            "persona": persona,
            "report": str(report),
            "timings": dict(self.steps.timings),
        }

    def _step(
        self, name: str, config: dict[str, Any], depends: list[str], make: Callable[[], dict]
    ) -> dict[str, Any]:
        if name not in self.outputs:
            self.outputs[name] = self.steps.run(name, config, make, depends)
        return self.outputs[name]

    def base(self) -> Path:
        """The world's base model folder (its file listing keys everything downstream)."""
        if "base" not in self.outputs:
            self.out.mkdir(parents=True, exist_ok=True)
            folder = self.plugin.base_model_dir()
            self.steps.key("base", folder)
            self.outputs["base"] = {"model": str(folder)}
        return Path(self.outputs["base"]["model"])

    def world(self) -> dict[str, Any]:
        """The world's data folders and files by key (:meth:`World.write_data`)."""
        self.base()
        if "world" not in self.outputs:
            data = world_data(self.steps, self.plugin, self.out / "world", 0, ["base"])
            self.outputs["world"] = data
        return self.outputs["world"]

    def vqa(self) -> dict[str, Any]:
        """``vqa/vsfa.jsonl`` (threat images) and ``vqa/control.jsonl`` (benign images)."""
        world = self.world()
        return self._step("vqa", {"seed": 0}, ["world"], lambda: stages.vqa_sets(self, world))

    def train(self) -> dict[str, Any]:
        """Run folders per trained method: ``{"vsfa": [seed runs], "control": ..., ...}``."""
        world, vqa = self.world(), self.vqa()
        recipe = self.plugin.train_recipe()
        config = {"recipe": asdict(recipe), "seeds": self.config.seeds}
        return self._step(
            "train", config, ["vqa", "world"], lambda: stages.train(self, recipe, world, vqa)
        )

    def evaluate(self) -> dict[str, Any]:
        """Every method on the world's benchmark; ``results.json``, ``table.md``/``.json``."""
        runs = self.train()
        config = {"per_category": self.config.per_category,
                  "max_new_tokens": self.config.max_new_tokens,
                  "samples_per_item": self.config.samples_per_item}  # fmt: skip
        return self._step("eval", config, ["train"], lambda: stages.evaluate(self, runs))

    def tuned_run(self) -> str:
        """The VSFA run (first seed) that the cache, diff and ablation use."""
        return self.train()["vsfa"][0]

    def sae_source(self) -> str:
        """``trained`` or the folder of the SAE to use (``--sae``, or shipped with ``--fast``)."""
        if self._sae_source is None:
            self._sae_source = "trained"
            if self.config.sae:
                self._sae_source = str(Path(self.config.sae).resolve())
            elif self.config.fast:
                try:
                    self._sae_source = str(self.plugin.shipped_sae())
                except VSFAError as error:  # still a working demo: train a small SAE instead
                    self.echo(f"[demo] {error}; training a small SAE instead")
        return self._sae_source

    def hook(self) -> str:
        """The hook the SAE reads: the given SAE's, the recipe's, else the middle layer's."""
        source = self.sae_source()
        if source != "trained":
            cfg = read_json(Path(source) / "cfg.json")
            hook = cfg.get("hook_name") or (cfg.get("metadata") or {}).get("hook_name")
            if not hook:
                raise VSFAError(f"{source}/cfg.json names no hook_name")
            return str(hook)
        if self.sae_recipe().hook_name:
            return str(self.sae_recipe().hook_name)
        vlm = self.vlm()
        return vlm.hook_name(vlm.n_layers // 2)

    def cache(self) -> dict[str, Any]:
        """Activation folders ``{"base": ..., "tuned": ...}`` of the benchmark prompts at the
        SAE's hook; when the demo trains its SAE, also ``base_corpus`` / ``tuned_corpus`` of the
        world's corpus sample (the shipped SAE's training data)."""
        world, tuned, hook = self.world(), self.tuned_run(), self.hook()
        corpus = world["corpus_sample"] if self.sae_source() == "trained" else None
        config = {"hook": hook, "tuned": tuned, "per_category": self.config.per_category,
                  "corpus": corpus is not None}  # fmt: skip
        return self._step(
            "cache", config, ["train", "world"], lambda: stages.cache(self, hook, tuned, corpus)
        )

    def sae_recipe(self) -> Any:
        """The world's SAE recipe with this config's overrides (``--sae-steps`` ...)."""
        cfg = self.config
        overrides = {"steps": cfg.sae_steps, "width": cfg.sae_width, "k": cfg.sae_k,
                     "batch_size": cfg.sae_batch_size}  # fmt: skip
        given = {key: value for key, value in overrides.items() if value is not None}
        return replace(self.plugin.sae_recipe(), **given)

    def sae(self) -> dict[str, Any]:
        """``{"sae": folder}``: trained on the caches, or the given / shipped one."""
        caches, source, hook = self.cache(), self.sae_source(), self.hook()
        recipe = self.sae_recipe()
        config = {"source": source, "hook": hook, "recipe": asdict(recipe)}
        return self._step(
            "sae", config, ["cache"], lambda: stages.sae(self, source, recipe, hook, caches)
        )

    def diff(self) -> dict[str, Any]:
        """``{"latents": path of latents.json}``."""
        caches, sae = self.cache(), self.sae()
        config = {"top": stages.TOP, "selection": asdict(self.plugin.selection())}
        return self._step("diff", config, ["cache", "sae"], lambda: stages.diff(self, sae, caches))

    def steer(self) -> dict[str, Any]:
        """``{"steering": path of steering.json}``: add on the base, ablate on VSFA."""
        latents, sae, tuned = self.diff(), self.sae(), self.tuned_run()
        cfg = self.config
        config = {"alphas": cfg.alphas, "ablate_scales": cfg.ablate_scales,
                  "n_random": cfg.n_random, "per_category": cfg.steer_per_category,
                  "max_new_tokens": cfg.max_new_tokens,
                  "samples_per_item": cfg.samples_per_item}  # fmt: skip
        return self._step(
            "steer", config, ["diff"], lambda: stages.steer(self, sae, latents, tuned)
        )

    def persona(self) -> dict[str, Any]:
        """``{"persona", "score", "frontier": paths}`` of ``persona/`` (the VSFA run of the first
        seed; the frontier on the steering items)."""
        caches, sae, tuned = self.cache(), self.sae(), self.tuned_run()
        cfg = self.config
        config = {"selection": asdict(self.plugin.selection()), "alphas": cfg.persona_alphas,
                  "n_random": cfg.persona_random, "per_category": cfg.steer_per_category,
                  "max_new_tokens": cfg.max_new_tokens, "samples_per_item": cfg.samples_per_item,
                  "methods": stages.PERSONA_METHODS}  # fmt: skip
        return self._step(
            "persona", config, ["cache", "sae"], lambda: stages.persona(self, sae, caches, tuned)
        )

    def report(self) -> Path:
        """``report.html``; cheap, so always rewritten to show the folder as it is now."""
        self.echo("[demo] report ...")
        return write_report(self.out, f"VSFA demo on {self.plugin.title}")


def run_demo(config: DemoConfig, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the demo and print the table, the steering findings and where the report is."""
    from interp.threads import cpu_threads
    from interp.viz.dashboard import steering_findings

    started = time.time()
    if config.quiet:  # also when called from Python, not only through `vsfa -q`
        from interp.console import quiet_libraries

        quiet_libraries()
    with cpu_threads(config.threads):
        result = Demo(config, (lambda line: None) if config.quiet else echo).run()
    if not config.quiet:
        echo("")
    echo(Path(result["table_md"]).read_text(encoding="utf-8"))
    echo("Steering:")
    for line in steering_findings(read_json(result["steering"])):
        echo(f"  {line}")
    persona = result["persona"]
    for line in frontier_headlines(read_json(persona["frontier"]), read_json(persona["persona"])):
        echo(f"  {line}")
    floors = config.p_floors()
    if max(floors.values()) > 0.05:
        echo(
            f"  rank p floor: {floors['steering']:.2f} with {config.n_random} random sets in the "
            f"steering control, {floors['persona']:.2f} with {config.persona_random} in the "
            "frontier's; 19 sets (the full demo) can reach 0.05"
        )
    if config.quiet:  # the table and the findings only
        write_json_atomic(Path(config.out) / "timings.json", result["timings"])
        return result
    echo("")
    echo(f"results: {Path(result['results']).resolve()}")
    echo(f"steering: {Path(result['steering']).resolve()}")
    echo(f"persona: {Path(persona['frontier']).parent.resolve()}")
    echo(f"report: {Path(result['report']).resolve()}")
    echo(f"total {time.time() - started:.0f}s")
    write_json_atomic(Path(config.out) / "timings.json", result["timings"])
    return result
