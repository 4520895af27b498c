"""What ``vsfa judge check`` and ``vsfa judge agree`` do: the judges, their model options, the
intervals. Free of heavy imports, so building the commands costs nothing at start-up."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from interp.errors import VSFAError

if TYPE_CHECKING:
    from interp.eval.judges import Judge


@dataclass
class JudgeModelOptions:
    """How an ``llm:PATH`` judge runs (ignored by the other judges)."""

    judge_template: str | None = None
    """llm judge: a ready-made template (vsfa, llama-guard, guard-prompt, mmsafety, figstep,
    xstest) or a prompt template file; llm:PATH#NAME names one too"""
    judge_max_new_tokens: int = 48
    """tokens the llm judge writes per verdict"""
    judge_use_image: bool = True
    """show a VLM judge the item's image"""
    batch_size: int = 8
    """replies per llm-judge batch"""
    device: str = "auto"
    """cpu, cuda or auto"""
    dtype: str = "auto"
    """float32, bfloat16 or auto"""
    n_boot: int = 1000
    """bootstrap resamples for the intervals"""
    seed: int = 0
    """seed of the bootstrap"""
    quiet: bool = False
    """no progress bars"""

    def _check_options(self) -> None:
        if self.n_boot < 0:
            raise VSFAError("--n-boot must be at least 0")
        if self.judge_max_new_tokens < 1:
            raise VSFAError("--judge-max-new-tokens must be at least 1")
        if self.batch_size < 1:
            raise VSFAError("--batch-size must be at least 1")

    def make(self, spec: str) -> Judge:
        """The judge ``spec`` names, with these model options."""
        from interp.eval.judges import make_judge

        template = self.judge_template if spec.startswith("llm:") else None
        return make_judge(
            spec, template=template, device=self.device, dtype=self.dtype,
            batch_size=self.batch_size, max_new_tokens=self.judge_max_new_tokens,
            use_image=self.judge_use_image, quiet=self.quiet,
        )  # fmt: skip


@dataclass
class JudgeCheckConfig(JudgeModelOptions):
    """One judge scored against labelled replies."""

    judge: str = "keyword"
    """keyword, keyword:NAME or keyword:FILE, llm:PATH or llm:PATH#TEMPLATE, organism, or another
    registered judge"""
    labels: str | None = None
    """JSONL of {prompt, response, label: refuse|comply|other, kind?, item_kind?, split?}
    (default: the shipped calibration set)"""
    out: str | None = None
    """write the full report (metrics, confusion, every disagreement) to this JSON file"""
    show: int = 20
    """disagreements printed (all are in --out)"""

    def __post_init__(self) -> None:
        self._check_options()
        if self.show < 0:
            raise VSFAError("--show must be at least 0")


@dataclass
class JudgeAgreeConfig(JudgeModelOptions):
    """Two judges compared on the stored replies of result folders."""

    judges: list[str] | None = None
    """the two judges, comma-separated: A,B (e.g. keyword,llm:/models/guard#llama-guard)"""
    out: str | None = None
    """write the agreement report to this JSON file"""

    def __post_init__(self) -> None:
        self._check_options()
        if not self.judges or len(self.judges) != 2:
            raise VSFAError("--judges needs two judges, comma-separated: --judges A,B")
