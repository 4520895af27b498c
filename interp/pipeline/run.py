"""``vsfa run exp.yaml``: data -> train -> eval for methods x seeds, then the comparison table.

Layout under ``out``::

    world/                      a world's data (when the YAML refers to one)
    data/<dataset>/vqa.jsonl    + vqa.audit.json, vqa.manifest.json
    train/<method>-s<seed>/     run folders of `vsfa train`
    eval/<method>-s<seed>/      result folders of `vsfa eval`
    steps/                      what each step was made from (:mod:`interp.pipeline.steps`)
    table.md, table.json        one row per method, seeds pooled

Every step is skipped when its output is current (training resumes or skips by its own
manifest), so re-running an experiment after adding a seed or a method only does the new work.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from interp.artifacts import json_sha256, manifest_key, read_json
from interp.errors import VSFAError
from interp.pipeline.experiment import ExperimentConfig, MethodSpec
from interp.pipeline.steps import Steps, world_data
from interp.pipeline.worlds import world_reference
from interp.train.config import TrainConfig


class References:
    """Resolves the experiment's world references (``<world>``, ``<world>:<key>``)."""

    def __init__(self, config: ExperimentConfig, steps: Steps) -> None:
        self.config = config
        self.steps = steps
        self.data: dict[str, dict[str, str]] = {}

    def __call__(self, value: str | None) -> str | None:
        reference = world_reference(value)
        if reference is None:
            return value
        world, key = reference
        if key is None:
            return str(world.base_model_dir())
        if world.name not in self.data:
            out = Path(self.config.out) / "world" / world.name
            self.data[world.name] = world_data(self.steps, world, out, self.config.world_seed)
        paths = self.data[world.name]
        if key not in paths:
            raise VSFAError(f"{value}: the {world.name} world has {', '.join(paths)}")
        return paths[key]


def build_datasets(
    config: ExperimentConfig, steps: Steps, resolve: References, *, quiet: bool
) -> dict[str, Path]:
    """Build every dataset a trained method uses (a step each)."""
    from interp.data.vqa import BuildConfig, build_manifest, build_vqa

    built = {}
    used = {m.dataset for m in config.methods if m.method in ("lora", "full")}
    for name, spec in config.datasets.items():
        if name not in used:
            continue
        out = Path(config.out) / "data" / name / "vqa.jsonl"
        kind, _, arg = spec.source.partition(":")
        build = BuildConfig(
            images=str(resolve(spec.images)), out=str(out),
            source=f"model:{resolve(arg)}" if kind == "model" else spec.source,
            questions_per_image=spec.questions_per_image, seed=spec.seed, limit=spec.limit,
            max_new_tokens=spec.max_new_tokens, device=config.device, dtype=config.dtype,
            quiet=quiet,
        )  # fmt: skip

        def make(build: Any = build, name: str = name) -> dict[str, Any]:
            report = build_vqa(build)
            _say(quiet, f"data {name}: {report['records']} records from {report['images']} images")
            return {"vqa": build.out}

        key = manifest_key(build_manifest(build))
        built[name] = Path(steps.run(f"data/{name}", {"build": key}, make)["vqa"])
    return built


def _train_config(
    config: ExperimentConfig, method: MethodSpec, seed: int, data: str | None, model: str,
    resolve: References, quiet: bool,
) -> TrainConfig:  # fmt: skip
    fields: dict[str, Any] = {**method.train}
    fields.update(
        model=model, data=data, out=str(Path(config.out) / "train" / f"{method.name}-s{seed}"),
        method=method.method, seed=seed, device=config.device, dtype=config.dtype, quiet=quiet,
    )  # fmt: skip
    if method.method == "vlguard":
        fields["image_root"] = resolve(method.image_root)
    return replace(config.train, **fields)


def _say(quiet: bool, text: str) -> None:
    if not quiet:
        print(text, flush=True)


def run_experiment(config: ExperimentConfig, *, quiet: bool = False) -> Path:
    """Run every step that is not already current; returns the folder with ``table.md``."""
    from interp.data.benchmarks import load_benchmark, parse_bench_spec
    from interp.eval.generation import GenerationConfig
    from interp.eval.judges import make_judge
    from interp.eval.run import evaluate
    from interp.eval.table import write_table
    from interp.models import load_vlm
    from interp.train.trainer import train

    out = Path(config.out)
    steps = Steps(out, "run", echo=lambda text: _say(quiet, text))
    resolve = References(config, steps)
    model = str(resolve(config.model))
    datasets = build_datasets(config, steps, resolve, quiet=quiet)

    items = []
    for spec in config.eval.bench:
        name, path = parse_bench_spec(spec)
        items.extend(
            load_benchmark(
                name, resolve(path), per_category=config.eval.per_category,
                seed=config.eval.subsample_seed,
            )
        )  # fmt: skip
    judge = make_judge(
        config.eval.judge, template=config.eval.judge_template, device=config.device,
        dtype=config.dtype, batch_size=config.eval.batch_size, quiet=quiet,
    )  # fmt: skip
    eval_dirs = []
    for method in config.methods:
        # Untrained rows decode greedily: one seed says all there is to say.
        seeds = config.seeds if method.trains else config.seeds[:1]
        for seed in seeds:
            adapter = None
            if method.trains:
                if method.method == "vlguard":
                    data = resolve(method.data)
                else:
                    data = str(datasets[method.dataset])
                train_config = _train_config(config, method, seed, data, model, resolve, quiet)
                _say(quiet, f"train {method.name} seed {seed} -> {train_config.out}")
                adapter = train(train_config)
            generation = GenerationConfig(
                max_new_tokens=config.eval.max_new_tokens, batch_size=config.eval.batch_size,
                seed=seed,
            )  # fmt: skip
            label = {
                "model": config.label,
                "adapter": None if adapter is None else str(adapter),
                "method": method.name,
                "seed": seed if method.trains else None,
            }
            eval_dir = out / "eval" / f"{method.name}-s{seed}"

            def make(adapter=adapter, eval_dir=eval_dir, generation=generation, label=label,
                     method=method) -> dict[str, Any]:  # fmt: skip
                vlm = load_vlm(model, device=config.device, dtype=config.dtype, adapter=adapter)
                evaluate(
                    vlm, items, eval_dir, judge=judge, generation=generation,
                    defense=method.defense, label=label, system=config.eval.system,
                    n_boot=config.eval.n_boot, quiet=quiet,
                )  # fmt: skip
                return {"metrics": str(eval_dir / "metrics.json")}

            step = _eval_step(config, method, label, adapter, generation, items, judge)
            steps.run(f"eval/{method.name}-s{seed}", step, make)
            eval_dirs.append(eval_dir)
    write_table(eval_dirs, out)
    return out


def _eval_step(
    config: ExperimentConfig, method: MethodSpec, label: dict, adapter: Path | None,
    generation: Any, items: list, judge: Any,
) -> dict[str, Any]:  # fmt: skip
    """What decides an evaluation's result, to skip it without loading the model."""
    trained = read_json(adapter / "manifest.json") if adapter is not None else None
    return {
        "model": config.model,
        "adapter": None if trained is None else manifest_key(trained),
        "label": label,
        "defense": method.defense,
        "generation": asdict(generation),
        "eval": asdict(replace(config.eval, bench=[])),
        "judge": {"name": judge.name, "config": judge.config()},
        "items": json_sha256([item.to_dict() for item in items]),
    }
