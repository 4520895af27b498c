"""The evaluation judges: a keyword refusal judge and an LLM judge running a local model.

Importing this package registers both in :data:`JUDGES` (``--judge keyword``,
``--judge keyword:FILE``, ``--judge llm:PATH``, ``--judge llm:PATH#TEMPLATE``); plug-ins register
theirs through the ``interp.plugins`` entry point. Every judge reports the configuration that
decides its verdicts (``config()``), which goes into the results' manifest. Calibrate a judge on
labelled replies with :mod:`interp.eval.judges.calibration`, compare two with
:mod:`interp.eval.judges.agreement`.
"""

from __future__ import annotations

import os
from pathlib import Path

from interp.errors import VSFAError
from interp.eval.judges.base import (
    JUDGES,
    OUTCOMES,
    Judge,
    JudgeFactory,
    Outcome,
    Verdict,
    get_judge,
)
from interp.eval.judges.keyword import DEFAULT_REFUSAL_PHRASES, KeywordJudge
from interp.eval.judges.llm import (
    DEFAULT_JUDGE_TEMPLATE,
    LLMJudge,
    LLMJudgeConfig,
    parse_judgement,
    split_template,
)
from interp.eval.judges.templates import DEFAULT_TEMPLATE, TEMPLATES, JudgeTemplate


def make_judge(
    spec: str,
    *,
    template: str | os.PathLike | None = None,
    device: str = "auto",
    dtype: str = "auto",
    batch_size: int = 8,
    max_new_tokens: int = 48,
    use_image: bool = True,
    quiet: bool = True,
) -> Judge:
    """A judge from a CLI spec; ``llm:PATH[#TEMPLATE]`` takes the judge-model options
    (``template``: a ready-made template's name or a prompt template file), every other judge is
    made by :func:`get_judge`."""
    name, _, arg = spec.partition(":")
    if name != "llm":
        if template is not None:
            raise VSFAError("--judge-template only applies to --judge llm:PATH")
        return get_judge(spec)
    if not arg:
        raise VSFAError("--judge llm needs a local model folder: --judge llm:PATH")
    path, template_name = split_template(arg)
    config = LLMJudgeConfig(
        path=path, device=device, dtype=dtype, batch_size=batch_size,
        max_new_tokens=max_new_tokens, use_image=use_image, quiet=quiet,
    )  # fmt: skip
    if template is not None and template_name is not None:
        raise VSFAError(
            f"--judge {spec} names a template; drop --judge-template or the #{template_name}"
        )
    if template is not None and str(template) in TEMPLATES:
        template_name = str(template)
    elif template is not None:
        template_path = Path(template).expanduser()
        if not template_path.is_file():
            raise VSFAError(
                f"--judge-template {template_path} is neither a file nor a template "
                f"({', '.join(TEMPLATES)})"
            )
        config.template = template_path.read_text(encoding="utf-8")
    config.template_name = template_name or DEFAULT_TEMPLATE
    return LLMJudge(config)


__all__ = [
    "DEFAULT_JUDGE_TEMPLATE",
    "DEFAULT_REFUSAL_PHRASES",
    "JUDGES",
    "Judge",
    "JudgeFactory",
    "JudgeTemplate",
    "KeywordJudge",
    "LLMJudge",
    "LLMJudgeConfig",
    "OUTCOMES",
    "Outcome",
    "TEMPLATES",
    "Verdict",
    "get_judge",
    "make_judge",
    "parse_judgement",
]
