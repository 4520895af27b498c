"""``vsfa run exp.yaml``: data -> train -> eval for methods x seeds, then the comparison table.

Layout under ``out``::

    world/                      the organism's world (when the YAML refers to it)
    data/<dataset>/vqa.jsonl    + vqa.audit.json, vqa.manifest.json
    train/<method>-s<seed>/     run folders of `vsfa train`
    eval/<method>-s<seed>/      result folders of `vsfa eval`
    table.md, table.json        one row per method, seeds pooled

Every stage is skipped when its output exists with the same manifest, so re-running an
experiment after adding a seed or a method only does the new work.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from interp.artifacts import (
    json_sha256,
    make_manifest,
    manifest_key,
    read_json,
    write_json_atomic,
    write_text_atomic,
)
from interp.errors import VSFAError
from interp.pipeline.experiment import ORGANISM, ExperimentConfig, MethodSpec
from interp.train.config import TrainConfig


class _World:
    """The organism's model and world data, made on first use."""

    def __init__(self, config: ExperimentConfig) -> None:
        self.config = config
        self._paths: dict[str, Path] | None = None

    def _organism(self) -> Any:
        try:
            import interp.organism as organism
        except ModuleNotFoundError:  # pragma: no cover - the organism ships with the package
            raise VSFAError("the model organism is not installed") from None
        return organism

    def model(self) -> str:
        organism = self._organism()
        if not hasattr(organism, "base_model_dir"):
            raise VSFAError("model: organism needs interp.organism.base_model_dir (not available)")
        return str(organism.base_model_dir())

    def path(self, key: str) -> str:
        if self._paths is None:
            organism = self._organism()
            if not hasattr(organism, "write_world_data"):
                raise VSFAError("organism data needs interp.organism.write_world_data")
            out = Path(self.config.out) / "world"
            record = out / "world.json"
            seed = self.config.world_seed
            if record.exists() and read_json(record).get("seed") == seed:
                self._paths = {k: Path(v) for k, v in read_json(record)["paths"].items()}
            else:
                written = organism.write_world_data(out, seed=seed)
                self._paths = {k: Path(v) for k, v in written.items()}
                paths = {k: str(v) for k, v in self._paths.items()}
                write_json_atomic(record, {"seed": seed, "paths": paths})
        if key not in self._paths:
            raise VSFAError(f"organism:{key}: the organism's world has {', '.join(self._paths)}")
        return str(self._paths[key])

    def resolve(self, value: str | None) -> str | None:
        if value == ORGANISM:
            return self.model()
        if value is not None and value.startswith(f"{ORGANISM}:"):
            return self.path(value.split(":", 1)[1])
        return value


def _data_built(out: Path, manifest: dict[str, Any]) -> bool:
    from interp.data.vqa import manifest_path

    path = manifest_path(out)
    if not (out.exists() and path.exists()):
        return False
    existing = read_json(path)
    return bool(existing.get("complete")) and manifest_key(existing) == manifest_key(manifest)


def build_datasets(config: ExperimentConfig, world: _World, *, quiet: bool) -> dict[str, Path]:
    from interp.data.vqa import BuildConfig, build_manifest, build_vqa

    built = {}
    used = {m.dataset for m in config.methods if m.method in ("lora", "full")}
    for name, spec in config.datasets.items():
        if name not in used:
            continue
        out = Path(config.out) / "data" / name / "vqa.jsonl"
        source = spec.source
        if source == f"model:{ORGANISM}":
            source = f"model:{world.model()}"
        build = BuildConfig(
            images=str(world.resolve(spec.images)), out=str(out), source=source,
            questions_per_image=spec.questions_per_image, seed=spec.seed, limit=spec.limit,
            max_new_tokens=spec.max_new_tokens, device=config.device, dtype=config.dtype,
            quiet=quiet,
        )  # fmt: skip
        if not _data_built(out, build_manifest(build)):
            report = build_vqa(build)
            _say(quiet, f"data {name}: {report['records']} records from {report['images']} images")
        built[name] = out
    return built


def _train_config(
    config: ExperimentConfig, method: MethodSpec, seed: int, data: str | None, model: str,
    world: _World, quiet: bool,
) -> TrainConfig:  # fmt: skip
    options: dict[str, Any] = {**config.train, **method.train}
    options.update(
        model=model, data=data, out=str(Path(config.out) / "train" / f"{method.name}-s{seed}"),
        method=method.method, seed=seed, device=config.device, dtype=config.dtype, quiet=quiet,
    )  # fmt: skip
    if method.method == "vlguard":
        options["image_root"] = world.resolve(method.image_root)
    return TrainConfig.from_dict(options)


def _say(quiet: bool, text: str) -> None:
    if not quiet:
        print(text, flush=True)


def run_experiment(config: ExperimentConfig, *, quiet: bool = False) -> Path:
    """Run every stage that is not already current; returns the folder with ``table.md``."""
    from interp.data.benchmarks import load_benchmark, parse_bench_spec
    from interp.eval.generation import GenerationConfig
    from interp.eval.judges import make_judge
    from interp.eval.run import evaluate
    from interp.eval.table import write_table
    from interp.models import load_vlm
    from interp.train.trainer import train

    out = Path(config.out)
    world = _World(config)
    model = str(world.resolve(config.model))
    datasets = build_datasets(config, world, quiet=quiet)

    items = []
    for spec in config.eval.bench:
        name, path = parse_bench_spec(spec)
        items.extend(
            load_benchmark(
                name, world.resolve(path), per_category=config.eval.per_category,
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
                    data = world.resolve(method.data)
                else:
                    data = str(datasets[method.dataset])
                train_config = _train_config(config, method, seed, data, model, world, quiet)
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
            key = _eval_key(config, method, label, adapter, generation, items, judge)
            if not _eval_current(eval_dir, key):
                _say(quiet, f"eval {method.name} seed {seed} -> {eval_dir}")
                vlm = load_vlm(model, device=config.device, dtype=config.dtype, adapter=adapter)
                evaluate(
                    vlm, items, eval_dir, judge=judge, generation=generation,
                    defense=method.defense, label=label, system=config.eval.system,
                    n_boot=config.eval.n_boot, quiet=quiet,
                )  # fmt: skip
                write_text_atomic(eval_dir / "run_key.txt", key)
                del vlm
            eval_dirs.append(eval_dir)
    write_table(eval_dirs, out)
    return out


def _eval_key(
    config: ExperimentConfig, method: MethodSpec, label: dict, adapter: Path | None,
    generation: Any, items: list, judge: Any,
) -> str:  # fmt: skip
    """What decides an evaluation's result, to skip it without loading the model."""
    trained = read_json(adapter / "manifest.json") if adapter is not None else None
    return manifest_key(
        make_manifest(
            "run-eval",
            {
                "model": config.model,
                "adapter": None if trained is None else manifest_key(trained),
                "label": label,
                "defense": method.defense,
                "generation": asdict(generation),
                "eval": asdict(replace(config.eval, bench=[])),
                "judge": {"name": judge.name, "config": judge.config()},
                "items": json_sha256([item.to_dict() for item in items]),
            },
        )
    )


def _eval_current(eval_dir: Path, key: str) -> bool:
    key_file = eval_dir / "run_key.txt"
    return (
        (eval_dir / "metrics.json").exists()
        and key_file.exists()
        and key_file.read_text().strip() == key
    )
