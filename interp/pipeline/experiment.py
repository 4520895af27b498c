"""Typed experiment configuration for ``vsfa run exp.yaml`` (data -> train -> eval -> table).

Example (paths are relative to the YAML file's folder)::

    out: runs/llava
    model: /models/llava-1.5-7b-hf        # or `organism` for the shipped model organism
    model_label: LLaVA-1.5-7B
    seeds: [0, 1, 2]
    datasets:
      threat: {images: data/threat_images, source: metadata}
      benign: {images: data/benign_images}
    train: {lora_r: 16, epochs: 1, batch_size: 4}   # defaults of every trained method
                                                    # (`train: organism`: the organism's recipe)
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

Image folders may be given as ``organism:<key>`` (a key of
``interp.organism.write_world_data``: ``threat_images``, ``benign_images``, ``threat_photo``
...), and ``vlguard.data`` as ``organism``; the organism's world is then written under ``out``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from interp.errors import VSFAError

ORGANISM = "organism"
SHORTHAND_METHODS = ("none", "adashield", "vlguard", "vsfa", "vsfa-full")


@dataclass
class DatasetSpec:
    """One VQA set to build (``vsfa data build`` options)."""

    images: str
    source: str = "metadata"
    questions_per_image: int = 4
    limit: int | None = None
    seed: int = 0
    max_new_tokens: int = 48


@dataclass
class MethodSpec:
    """One row of the comparison: a training method (or none) plus an optional defense.

    ``name`` labels the row; ``method`` is a ``vsfa train`` method; ``dataset`` names a
    :class:`DatasetSpec` (``lora``/``full``); ``data``/``image_root`` give VLGuard data;
    ``defense`` is an inference-time defense (``adashield``); ``train`` overrides training
    options for this method only.
    """

    name: str
    method: str = "lora"
    dataset: str | None = None
    data: str | None = None
    image_root: str | None = None
    defense: str | None = None
    train: dict[str, Any] = field(default_factory=dict)

    @property
    def trains(self) -> bool:
        return self.method != "none"


@dataclass
class EvalSpec:
    """The evaluation every method gets (``vsfa eval`` options)."""

    bench: list[str] = field(default_factory=list)
    judge: str = "keyword"
    judge_template: str | None = None
    per_category: int | None = None
    subsample_seed: int = 0
    max_new_tokens: int = 64
    batch_size: int = 8
    system: str | None = None
    n_boot: int = 1000


@dataclass
class ExperimentConfig:
    """A whole experiment: one base model, its datasets, methods x seeds, one evaluation."""

    out: str
    model: str
    methods: list[MethodSpec]
    eval: EvalSpec
    model_label: str | None = None
    seeds: list[int] = field(default_factory=lambda: [0])
    datasets: dict[str, DatasetSpec] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"
    dtype: str = "auto"
    world_seed: int = 0
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def label(self) -> str:
        return self.model_label or Path(self.model.rstrip("/")).name or self.model


def _where(source: str | None, key: str) -> str:
    return f"{source}: {key}" if source else key


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise VSFAError(f"{where}: expected a mapping, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise VSFAError(f"{where}: unknown field(s) {unknown}; known: {sorted(known)}")
    try:
        return cls(**data)
    except TypeError as error:
        raise VSFAError(f"{where}: {error}") from None


def _path(value: str | None, base: Path) -> str | None:
    """Resolve a relative path against the YAML's folder; leave ids and ``organism`` refs."""
    if value is None or value == ORGANISM or value.startswith(f"{ORGANISM}:"):
        return value
    if "=" in value:  # a NAME=PATH benchmark spec
        name, _, path = value.partition("=")
        return f"{name}={_path(path, base)}"
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else base / path)


def _model_path(value: str, base: Path) -> str:
    if value == ORGANISM:
        return value
    local = base / value
    return str(local) if not Path(value).is_absolute() and local.exists() else value


def _method(entry: Any, index: int, raw: dict[str, Any], datasets: list[str], source: str | None):
    where = _where(source, f"methods[{index}]")
    if isinstance(entry, str):
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
            return MethodSpec("vlguard", "vlguard", **vlguard)
        if not datasets:
            raise VSFAError(f"{where}: method {entry} needs at least one entry under datasets:")
        return MethodSpec(entry, "full" if entry == "vsfa-full" else "lora", dataset=datasets[0])
    spec = _build(MethodSpec, entry, where)
    from interp.train.config import METHODS

    if spec.method not in METHODS:
        raise VSFAError(f"{where}: method {spec.method!r}; expected one of {', '.join(METHODS)}")
    if spec.method in ("lora", "full"):
        spec.dataset = spec.dataset or (datasets[0] if datasets else None)
        if spec.dataset not in datasets:
            raise VSFAError(
                f"{where}: dataset {spec.dataset!r} is not defined under datasets: "
                f"({', '.join(datasets) or 'none defined'})"
            )
    if spec.method == "vlguard" and not spec.data:
        raise VSFAError(f"{where}: method vlguard needs data: (a VLGuard train.json)")
    return spec


def organism_recipe() -> dict[str, Any]:
    """The organism's recommended VSFA fine-tuning options (``train: organism``)."""
    try:
        from interp.organism import ORGANISM_RECIPE
    except ImportError:
        raise VSFAError("train: organism needs interp.organism.ORGANISM_RECIPE") from None
    return dict(ORGANISM_RECIPE)


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
    base = Path(base)
    if not isinstance(raw, dict):
        raise VSFAError(f"{source or 'experiment'}: expected a mapping at the top level")
    allowed = {f.name for f in fields(ExperimentConfig)} | {"vlguard", "name"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise VSFAError(f"{_where(source, 'top level')}: unknown field(s) {unknown}")
    for key in ("out", "model", "methods", "eval"):
        if key not in raw:
            raise VSFAError(f"{_where(source, key)}: missing (required)")
    datasets = {}
    raw_datasets = raw.get("datasets") or {}
    if not isinstance(raw_datasets, dict):
        raise VSFAError(f"{_where(source, 'datasets')}: expected a mapping name -> dataset")
    for name, entry in raw_datasets.items():
        spec = _build(DatasetSpec, entry, _where(source, f"datasets.{name}"))
        spec.images = _path(spec.images, base)
        if spec.source.startswith("jsonl:"):
            spec.source = f"jsonl:{_path(spec.source[6:], base)}"
        elif spec.source.startswith("model:") and spec.source[6:] != ORGANISM:
            spec.source = f"model:{_model_path(spec.source[6:], base)}"
        datasets[str(name)] = spec
    if not isinstance(raw["methods"], list) or not raw["methods"]:
        raise VSFAError(f"{_where(source, 'methods')}: expected a non-empty list")
    methods = [_method(e, i, raw, list(datasets), source) for i, e in enumerate(raw["methods"])]
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise VSFAError(f"{_where(source, 'methods')}: method names must be unique ({names})")
    for method in methods:
        method.data = _path(method.data, base)
        method.image_root = _path(method.image_root, base)
    evaluation = _build(EvalSpec, raw["eval"], _where(source, "eval"))
    if not evaluation.bench:
        raise VSFAError(f"{_where(source, 'eval.bench')}: give at least one NAME=PATH benchmark")
    evaluation.bench = [_path(b, base) if "=" in b else b for b in evaluation.bench]
    evaluation.judge_template = _path(evaluation.judge_template, base)
    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise VSFAError(f"{_where(source, 'seeds')}: expected a non-empty list of integers")
    train = raw.get("train") or {}
    if train == ORGANISM:
        train = organism_recipe()
    if not isinstance(train, dict):
        raise VSFAError(f"{_where(source, 'train')}: expected a mapping of training options")
    if train.get("method") in ("lora", "full"):  # a recipe's kind of update wins for `vsfa`
        for entry, method in zip(raw["methods"], methods):
            if entry == "vsfa":
                method.method = train["method"]
    return ExperimentConfig(
        out=str(_path(str(raw["out"]), base)),
        model=_model_path(str(raw["model"]), base),
        methods=methods,
        eval=evaluation,
        model_label=raw.get("model_label"),
        seeds=seeds,
        datasets=datasets,
        train=dict(train),
        device=str(raw.get("device", "auto")),
        dtype=str(raw.get("dtype", "auto")),
        world_seed=int(raw.get("world_seed", 0)),
        source=source,
    )
