"""Options of the monitor commands (``vsfa monitor``, ``vsfa monitor-calibrate``,
``vsfa data screen``). Light on purpose: the CLI builds its options from this module."""

from __future__ import annotations

from dataclasses import dataclass

from interp.errors import VSFAError


@dataclass(kw_only=True)
class ModelOptions:
    """The model a monitor reads and the persona folder it projects onto."""

    model: str
    """hub id or local model folder"""
    adapter: str | None = None
    """PEFT adapter or training run folder (the deployed, tuned model)"""
    persona: str
    """persona folder (vsfa persona extract); its chosen hook unless --hook"""
    hook: str | None = None
    """hook of the persona vector to read (default: the folder's chosen hook)"""
    batch_size: int = 16
    """prompts per forward"""
    device: str = "auto"
    """cpu, cuda or auto"""
    model_dtype: str = "auto"
    """dtype the model runs in (auto: bfloat16 on a GPU, float32 on the CPU)"""

    def check_model(self) -> None:
        if self.batch_size < 1:
            raise VSFAError("--batch-size must be at least 1")


@dataclass(kw_only=True)
class StreamConfig(ModelOptions):
    """Options of :func:`interp.monitor.stream.stream_monitor` (``vsfa monitor``)."""

    prompts: str
    """JSONL of prompts, one {"prompt": ..., "image": optional path, "id": optional, "kind":
    optional} per line, or - for stdin"""
    out: str
    """JSONL log to append to: one line per prompt (projection, optional reply and verdict)
    and one per alert"""
    reply: bool = False
    """also generate each reply and write it with the judge's verdict"""
    judge: str = "keyword"
    """judge of the replies (a registered name, with --reply)"""
    max_new_tokens: int = 48
    """tokens per reply (with --reply)"""
    window: int = 50
    """prompts in the rolling mean of the projection"""
    threshold: float | None = None
    """alert when the rolling mean falls below this projection (default: --calibration's)"""
    calibration: str | None = None
    """calibration.json of vsfa monitor-calibrate: its threshold and direction"""

    def __post_init__(self) -> None:
        self.check_model()
        if self.window < 1:
            raise VSFAError("--window must be at least 1")
        if self.max_new_tokens < 1:
            raise VSFAError("--max-new-tokens must be at least 1")


@dataclass(kw_only=True)
class CalibrateConfig(ModelOptions):
    """Options of :func:`interp.monitor.stream.calibrate` (``vsfa monitor-calibrate``): the
    projection of base and tuned model on the same prompts, and the threshold between them."""

    prompts: str
    """calibration prompts: a JSONL like vsfa monitor's, a benchmark spec NAME[=PATH] or a
    prompts .jsonl/.txt that vsfa cache reads (not the prompts to be monitored)"""
    out: str
    """calibration.json to write"""
    window: int = 50
    """rolling window the threshold is meant for (recorded; its false alarms are counted)"""

    def __post_init__(self) -> None:
        self.check_model()
        if not self.adapter:
            raise VSFAError("vsfa monitor-calibrate needs --adapter (the tuned model)")
        if self.window < 1:
            raise VSFAError("--window must be at least 1")


@dataclass(kw_only=True)
class ScreenConfig:
    """Options of :func:`interp.monitor.screen.screen` (``vsfa data screen``)."""

    images: str | None = None
    """folder of candidate images (with vsfa data build sidecars or not); each image is asked
    the VQA templates and answered from its metadata sidecar when it has one"""
    data: str | None = None
    """VQA JSONL whose records are scored one by one (instead of --images)"""
    model: str
    """hub id or local model folder (the model to be fine-tuned)"""
    persona: str
    """persona folder (vsfa persona extract) of that model"""
    out: str
    """folder for screen.jsonl (ranked, highest predicted persona shift first) and
    screen.html (histogram)"""
    hook: str | None = None
    """hook of the persona vector (default: the folder's chosen hook)"""
    source: str = "metadata"
    """--images only: where the dataset's answers come from, as vsfa data build --source
    (metadata, or model:PATH)"""
    max_new_tokens: int = 32
    """tokens of the model's own answer to each question"""
    select: int | None = None
    """also write top_N.jsonl and bottom_N.jsonl beside the VQA file: the records of the N
    highest and lowest ranked images (or records)"""
    batch_size: int = 16
    """records per forward"""
    device: str = "auto"
    """cpu, cuda or auto"""
    model_dtype: str = "auto"
    """dtype the model runs in (auto: bfloat16 on a GPU, float32 on the CPU)"""
    quiet: bool = False
    """no progress bar"""

    def __post_init__(self) -> None:
        if (self.images is None) == (self.data is None):
            raise VSFAError("vsfa data screen needs exactly one of --images DIR and --data VQA")
        if self.batch_size < 1:
            raise VSFAError("--batch-size must be at least 1")
        if self.max_new_tokens < 1:
            raise VSFAError("--max-new-tokens must be at least 1")
        if self.select is not None and self.select < 1:
            raise VSFAError("--select must be at least 1")
