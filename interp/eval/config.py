"""What ``vsfa eval`` does to one model: the model, its judge, decoding, defense and table label.

:class:`EvalConfig` is the command's one declaration (every field is an option); the benchmark
items come separately (``--bench``, repeatable). It holds the fields of
:class:`~interp.eval.generation.GenerationConfig` and the LLM judge's options and builds both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from interp.errors import VSFAError
from interp.eval.generation import GenerationConfig
from interp.models.placement import check_placement

if TYPE_CHECKING:
    from interp.eval.judges import Judge


@dataclass
class EvalConfig:
    """One model evaluated on benchmark items into a result folder."""

    model: str
    """hub id or local model folder"""
    out: str
    """result folder"""
    adapter: str | None = None
    """PEFT adapter or training run folder"""
    judge: str = "keyword"
    """keyword, keyword:gcg-vlguard (the older phrase list), keyword:FILE (one refusal phrase per
    line), llm:PATH[#TEMPLATE] (a local judge model) or another registered judge's name"""
    judge_template: str | None = None
    """the llm judge's prompt template: a shipped name (vsfa, llama-guard, guard-prompt, mmsafety,
    figstep, xstest) or a template file"""
    judge_max_new_tokens: int = 48
    """tokens the llm judge writes per verdict"""
    judge_use_image: bool = True
    """show a VLM judge the item's image"""
    defense: str | None = None
    """adashield, or a defense prompt .txt file"""
    method: str | None = None
    """method label for the table (default: the defense name, else 'none')"""
    model_label: str | None = None
    """model name for the table (default: the model folder's name)"""
    seed: int | None = None
    """run seed (table label and sampling seed)"""
    per_category: int | None = None
    """at most N items per category"""
    subsample_seed: int = 0
    """seed of the per-category subsample"""
    sample: bool = False
    """sample instead of greedy decoding"""
    samples_per_item: int = 1
    """samples per item (with --sample)"""
    temperature: float = 1.0
    """sampling temperature"""
    top_p: float = 1.0
    """nucleus sampling threshold"""
    max_new_tokens: int = 64
    """tokens generated per response"""
    batch_size: int = 8
    """items per generation batch (and per llm-judge batch)"""
    system: str | None = None
    """system text for every prompt"""
    device: str = "auto"
    """cpu, cuda or auto"""
    dtype: str = "auto"
    """float32, bfloat16 or auto"""
    device_map: str | None = None
    """place the model over devices instead of moving it to --device: auto (GPUs, then CPU,
    then disk), balanced, sequential, one device, MODULE=DEVICE,... or a .json map"""
    max_memory: str | None = None
    """per-device caps for --device-map auto, e.g. 0=20GiB,cpu=60GiB (what does not fit is
    offloaded to disk)"""
    n_boot: int = 1000
    """bootstrap resamples for the intervals"""
    force: bool = False
    """recompute even if --out holds current results"""
    overwrite: bool = False
    """discard existing generations (no resume)"""
    quiet: bool = False
    """no progress bars"""

    def __post_init__(self) -> None:
        check_placement(self.device_map, self.max_memory)
        if self.per_category is not None and self.per_category < 1:
            raise VSFAError("--per-category must be at least 1")
        if self.n_boot < 0:
            raise VSFAError("--n-boot must be at least 0")
        if self.judge_max_new_tokens < 1:
            raise VSFAError("--judge-max-new-tokens must be at least 1")
        self.generation()  # checks the decoding options

    def generation(self) -> GenerationConfig:
        """The decoding settings (the sampling seed is ``seed``, 0 when unset)."""
        return GenerationConfig(
            max_new_tokens=self.max_new_tokens, batch_size=self.batch_size,
            do_sample=self.sample, temperature=self.temperature, top_p=self.top_p,
            seed=self.seed or 0, samples_per_item=self.samples_per_item,
        )  # fmt: skip

    def make_judge(self) -> Judge:
        """The judge ``--judge`` names, with the llm judge's options."""
        from interp.eval.judges import make_judge

        return make_judge(
            self.judge, template=self.judge_template, device=self.device, dtype=self.dtype,
            batch_size=self.batch_size, max_new_tokens=self.judge_max_new_tokens,
            use_image=self.judge_use_image, quiet=self.quiet,
        )  # fmt: skip

    def label(self, defense_name: str | None) -> dict[str, Any]:
        """The result's row identity in tables: model, adapter, method and seed."""
        return {
            "model": self.model_label or Path(self.model.rstrip("/")).name or self.model,
            "adapter": self.adapter or None,
            "method": self.method or defense_name or "none",
            "seed": self.seed,
        }
