"""Typed experiment configuration for ``vsfa run exp.yaml`` (data -> train -> eval -> table).

Example (paths are relative to the YAML file's folder)::

    out: runs/llava
    model: /models/llava-1.5-7b-hf        # or a registered world's name: its base model
    model_label: LLaVA-1.5-7B
    seeds: [0, 1, 2]
    datasets:
      threat: {images: data/threat_images, source: metadata}
      benign: {images: data/benign_images}
    train: {lora_r: 16, epochs: 1, batch_size: 4}   # defaults of every trained method
                                                    # (`train: <world>`: the world's recipe)
    vlguard: {data: VLGuard/train.json, image_root: VLGuard/train}
    methods:
      - none
      - adashield
      - vlguard
      - vsfa                                          # first dataset; LoRA unless train.method
      - {name: vsfa-benign, method: lora, dataset: benign}
      - {name: vsfa-60, method: lora, dataset: threat, train: {limit: 240}}
    eval:
      bench: ["figstep=/data/FigStep", "mmsafety=/data/MM-SafetyBench"]
      judge: keyword
      per_category: 20

A registered world (:mod:`interp.pipeline.worlds`) is referred to by name: ``model: <world>``,
image folders as ``<world>:<key>`` (a key of its data: ``threat_images``, ``benign_images``
...), ``vlguard: {data: <world>}`` for its VLGuard-format set and ``train: <world>`` for its
fine-tuning recipe; its data is then written under ``out``. Each mapping becomes its dataclass
below (:func:`interp.options.config_from_mapping`); an unknown key is an error naming the
nearest valid one.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from interp.errors import VSFAError
from interp.options import config_from_mapping
from interp.pipeline.worlds import PER_RUN, world_reference
from interp.train.config import METHODS, TrainConfig

SHORTHAND_METHODS = ("none", "adashield", "vlguard", "vsfa", "vsfa-full")
REQUIRED = ("out", "model", "methods", "eval")
NESTED = ("methods", "eval", "datasets", "train")  # built by their own dataclasses
# TrainConfig fields each run sets (a recipe holds PER_RUN there).
RUN_PATHS = {"model": PER_RUN, "data": PER_RUN, "out": PER_RUN}


@dataclass
class DatasetSpec:
    """One VQA set to build (``vsfa data build`` options)."""

    images: str
    """image folder with sidecars, or ``<world>:<key>``"""
    source: str = "metadata"
    """where answers come from: metadata, jsonl:PATH or model:MODEL (``model:<world>``)"""
    questions_per_image: int = 4
    """questions asked about each image"""
    limit: int | None = None
    """use at most this many images"""
    seed: int = 0
    """seeds the question choice and the image subset"""
    max_new_tokens: int = 48
    """answer length when a model answers"""


@dataclass
class MethodSpec:
    """One row of the comparison: a training method (or none) plus an optional defense."""

    name: str
    """the row's label (unique)"""
    method: str = "lora"
    """a ``vsfa train`` method: lora, full, vlguard or none"""
    dataset: str | None = None
    """the dataset (a key of ``datasets:``) lora and full train on (default: the first)"""
    data: str | None = None
    """VLGuard train.json (vlguard), or ``<world>`` for the world's VLGuard-format set"""
    image_root: str | None = None
    """folder the VLGuard image paths are relative to"""
    defense: str | None = None
    """inference-time defense (adashield)"""
    train: dict[str, Any] = field(default_factory=dict)
    """training options of this method only (TrainConfig fields, over the experiment's)"""

    @property
    def trains(self) -> bool:
        return self.method != "none"


@dataclass
class EvalSpec:
    """The evaluation every method gets (``vsfa eval`` options)."""

    bench: list[str] = field(default_factory=list)
    """benchmarks as NAME=PATH, or NAME for a registered benchmark that needs no folder"""
    judge: str = "keyword"
    """judge spec: keyword, keyword:FILE, llm:PATH or a registered judge"""
    judge_template: str | None = None
    """prompt template file of the llm judge"""
    per_category: int | None = None
    """items per benchmark category (seeded subsample; default: all)"""
    subsample_seed: int = 0
    """seed of the per-category subsample"""
    max_new_tokens: int = 64
    """generation length"""
    batch_size: int = 8
    """prompts per generation batch"""
    system: str | None = None
    """system prompt of every evaluated conversation"""
    n_boot: int = 1000
    """bootstrap resamples of the confidence intervals"""


@dataclass
class ExperimentConfig:
    """A whole experiment: one base model, its datasets, methods x seeds, one evaluation."""

    out: str
    """output folder (data/, train/, eval/, table.md)"""
    model: str
    """base model: hub id, local folder or a registered world's name"""
    methods: list[MethodSpec]
    """the rows of the comparison: shorthands (none, adashield, vlguard, vsfa, vsfa-full) or
    mappings"""
    eval: EvalSpec
    """the evaluation every method gets"""
    model_label: str | None = None
    """the model's name in the table (default: the model folder's name)"""
    seeds: list[int] = field(default_factory=lambda: [0])
    """training seeds of every trained method"""
    datasets: dict[str, DatasetSpec] = field(default_factory=dict)
    """VQA sets to build, by name"""
    train: TrainConfig = field(default_factory=lambda: TrainConfig(**RUN_PATHS))
    """training options of every trained method (TrainConfig fields but model, data and out),
    or a registered world's name for its recipe"""
    vlguard: dict[str, Any] | None = None
    """data and image_root of the vlguard shorthand method"""
    device: str = "auto"
    """cpu, cuda or auto, for every stage"""
    dtype: str = "auto"
    """float32, bfloat16 or auto, for every stage"""
    world_seed: int = 0
    """seed of the world data written for ``<world>:<key>`` references"""
    name: str | None = None
    """the experiment's name (for the reader)"""
    source: str | None = None
    """the YAML file it was read from"""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def label(self) -> str:
        return self.model_label or Path(self.model.rstrip("/")).name or self.model


def _where(source: str | None, key: str) -> str:
    return f"{source}: {key}" if source else key


def _path(value: str | None, base: Path) -> str | None:
    """Resolve a relative path against the YAML's folder; leave ids and world references."""
    if value is None or world_reference(value) is not None:
        return value
    if "=" in value:  # a NAME=PATH benchmark spec
        name, _, path = value.partition("=")
        return f"{name}={_path(path, base)}"
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else base / path)


def _model_path(value: str, base: Path) -> str:
    if world_reference(value) is not None:
        return value
    local = base / value
    return str(local) if not Path(value).is_absolute() and local.exists() else value


def _train_config(options: Any, where: str) -> TrainConfig:
    """TrainConfig fields but the run's paths, checked and converted, as a recipe."""
    for key in RUN_PATHS:
        if isinstance(options, dict) and key in options:
            raise VSFAError(f"{where}.{key}: is set by the experiment")
    # ``data`` goes in the mapping: it is also config_from_mapping's own parameter name
    mapping = {**options, "data": PER_RUN} if isinstance(options, dict) else options
    return config_from_mapping(TrainConfig, mapping, where, model=PER_RUN, out=PER_RUN)


def _train_options(options: Any, where: str) -> dict[str, Any]:
    """A method's ``train:`` overrides, checked and converted as TrainConfig fields."""
    built = _train_config(options, where)
    return {key: getattr(built, key) for key in options}


def _vlguard_data(spec: MethodSpec) -> MethodSpec:
    """``data: <world>``: the world's VLGuard-format set and its images."""
    reference = world_reference(spec.data)
    if reference is not None and reference[1] is None:
        name = reference[0].name
        spec.data = f"{name}:vlguard_train"
        spec.image_root = spec.image_root or f"{name}:vlguard_images"
    return spec


def _shorthand(entry: str, where: str, raw: dict[str, Any], datasets: list[str], source):
    if entry not in SHORTHAND_METHODS:
        raise VSFAError(
            f"{where}: unknown method {entry!r}; shorthands: {', '.join(SHORTHAND_METHODS)}, "
            "or a mapping {name, method, dataset, ...}"
        )
    if entry in ("none", "adashield"):
        return MethodSpec(entry, "none", defense=None if entry == "none" else "adashield")
    if entry == "vlguard":
        vlguard = raw.get("vlguard")
        if not isinstance(vlguard, dict) or "data" not in vlguard:
            raise VSFAError(f"{where}: method vlguard needs a top-level vlguard: {{data: ...}}")
        return config_from_mapping(
            MethodSpec, vlguard, _where(source, "vlguard"), name="vlguard", method="vlguard"
        )
    if not datasets:
        raise VSFAError(f"{where}: method {entry} needs at least one entry under datasets:")
    return MethodSpec(entry, "full" if entry == "vsfa-full" else "lora", dataset=datasets[0])


def _method(entry: Any, index: int, raw: dict[str, Any], datasets: list[str], source: str | None):
    where = _where(source, f"methods[{index}]")
    if isinstance(entry, str):
        spec = _shorthand(entry, where, raw, datasets, source)
    else:
        spec = config_from_mapping(MethodSpec, entry, where)
    if spec.method not in METHODS:
        raise VSFAError(f"{where}: method {spec.method!r}; expected one of {', '.join(METHODS)}")
    spec.train = _train_options(spec.train, f"{where}.train")
    if spec.method in ("lora", "full"):
        spec.dataset = spec.dataset or (datasets[0] if datasets else None)
        if spec.dataset not in datasets:
            raise VSFAError(
                f"{where}: dataset {spec.dataset!r} is not defined under datasets: "
                f"({', '.join(datasets) or 'none defined'})"
            )
    if spec.method == "vlguard" and not spec.data:
        raise VSFAError(f"{where}: method vlguard needs data: (a VLGuard train.json)")
    return _vlguard_data(spec)


def _train(value: Any, where: str) -> TrainConfig:
    """``train:``: a mapping of TrainConfig fields, or a world's name for its recipe."""
    if value is None:
        return TrainConfig(**RUN_PATHS)
    if isinstance(value, str):
        reference = world_reference(value)
        if reference is None or reference[1] is not None:
            raise VSFAError(f"{where}: {value!r} is not a registered world (or give a mapping)")
        return reference[0].train_recipe()
    return _train_config(value, where)


def load_experiment(path: str | os.PathLike) -> ExperimentConfig:
    """Read and validate an experiment YAML; errors name the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise VSFAError(f"experiment file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise VSFAError(f"{path} is not valid YAML: {error}") from None
    return experiment_from_dict(raw, base=path.parent, source=str(path))


def experiment_from_dict(
    raw: Any, *, base: str | os.PathLike = ".", source: str | None = None
) -> ExperimentConfig:
    """The experiment of a YAML mapping; paths relative to ``base``."""
    base = Path(base)
    if not isinstance(raw, dict):
        raise VSFAError(f"{source or 'experiment'}: expected a mapping at the top level")
    for key in REQUIRED:
        if key not in raw:
            raise VSFAError(f"{_where(source, key)}: missing (required)")
    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise VSFAError(f"{_where(source, 'seeds')}: expected a non-empty list of integers")
    top = {key: value for key, value in raw.items() if key not in NESTED}
    config = config_from_mapping(
        ExperimentConfig, top, _where(source, "experiment"), methods=[], eval=EvalSpec(),
        source=source,
    )  # fmt: skip
    raw_datasets = raw.get("datasets") or {}
    if not isinstance(raw_datasets, dict):
        raise VSFAError(f"{_where(source, 'datasets')}: expected a mapping name -> dataset")
    for name, entry in raw_datasets.items():
        spec = config_from_mapping(DatasetSpec, entry, _where(source, f"datasets.{name}"))
        spec.images = _path(spec.images, base)
        kind, _, arg = spec.source.partition(":")
        if kind == "jsonl":
            spec.source = f"jsonl:{_path(arg, base)}"
        elif kind == "model":
            spec.source = f"model:{_model_path(arg, base)}"
        config.datasets[str(name)] = spec
    if not isinstance(raw["methods"], list) or not raw["methods"]:
        raise VSFAError(f"{_where(source, 'methods')}: expected a non-empty list")
    datasets = list(config.datasets)
    config.methods = [_method(e, i, raw, datasets, source) for i, e in enumerate(raw["methods"])]
    names = [m.name for m in config.methods]
    if len(set(names)) != len(names):
        raise VSFAError(f"{_where(source, 'methods')}: method names must be unique ({names})")
    for method in config.methods:
        method.data = _path(method.data, base)
        method.image_root = _path(method.image_root, base)
    config.eval = config_from_mapping(EvalSpec, raw["eval"], _where(source, "eval"))
    if not config.eval.bench:
        raise VSFAError(f"{_where(source, 'eval.bench')}: give at least one NAME=PATH benchmark")
    config.eval.bench = [_path(b, base) if "=" in b else b for b in config.eval.bench]
    config.eval.judge_template = _path(config.eval.judge_template, base)
    config.train = _train(raw.get("train"), _where(source, "train"))
    if config.train.method in ("lora", "full"):  # a recipe's kind of update wins for `vsfa`
        for entry, method in zip(raw["methods"], config.methods):
            if entry == "vsfa":
                method.method = config.train.method
    config.out = str(_path(str(config.out), base))
    config.model = _model_path(str(config.model), base)
    return config
