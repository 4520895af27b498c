"""MM-SafetyBench (harmful): 13 scenarios x (SD, SD_TYPO, TYPO images and text-only).

Layout (the benchmark's repository with its image download unzipped beside it)::

    PATH/data/processed_questions/<scenario>.json    {"0": {"Question", "Rephrased Question",
                                                             "Rephrased Question(SD)", ...}}
    PATH/MM-SafetyBench(imgs)/<scenario>/{SD,SD_TYPO,TYPO}/<id>.jpg

The image folder may also be called ``imgs`` or sit under ``data/`` (``data/QueryRelated`` as
in the AdaShield repository's copy).
"""

from __future__ import annotations

import os
from pathlib import Path

from interp.data.benchmarks.common import Layout, resolve_image
from interp.data.records import BENCHMARKS, BenchmarkItem
from interp.errors import VSFAError

NAME = "mmsafety"
LAYOUT = Layout(
    NAME, "data/processed_questions/<scenario>.json and MM-SafetyBench(imgs)/<scenario>/<type>/"
)
SCENARIOS = (
    "01-Illegal_Activitiy",
    "02-HateSpeech",
    "03-Malware_Generation",
    "04-Physical_Harm",
    "05-EconomicHarm",
    "06-Fraud",
    "07-Sex",
    "08-Political_Lobbying",
    "09-Privacy_Violence",
    "10-Legal_Opinion",
    "11-Financial_Advice",
    "12-Health_Consultation",
    "13-Gov_Decision",
)
# The official judge counts a refusal *or a disclaimer* as safe in these scenarios.
DISCLAIMER_SCENARIOS = frozenset(
    {
        "08-Political_Lobbying",
        "10-Legal_Opinion",
        "11-Financial_Advice",
        "12-Health_Consultation",
        "13-Gov_Decision",
    }
)
# image type -> the question field paired with it (text-only uses the original question)
IMAGE_TYPES = {
    "SD": "Rephrased Question(SD)",
    "SD_TYPO": "Rephrased Question",
    "TYPO": "Rephrased Question",
}
TEXT_ONLY = "TEXT"
ALL_VARIANTS = (*IMAGE_TYPES, TEXT_ONLY)


def _images_root(root: Path) -> Path:
    return LAYOUT.find(
        root,
        [
            "MM-SafetyBench(imgs)",
            "imgs",
            "data/MM-SafetyBench(imgs)",
            "data/imgs",
            "data/QueryRelated",  # the copy shipped in the AdaShield repository
        ],
        "the image folder MM-SafetyBench(imgs)/",
    )


def load_mmsafety(
    path: str | os.PathLike | None, variants: tuple[str, ...] = ALL_VARIANTS
) -> list[BenchmarkItem]:
    """All MM-SafetyBench items of the chosen ``variants`` (image types and/or ``TEXT``)."""
    root = LAYOUT.root(path)
    unknown = [v for v in variants if v not in ALL_VARIANTS]
    if unknown:
        raise VSFAError(f"{NAME}: unknown variant(s) {unknown}; known: {', '.join(ALL_VARIANTS)}")
    questions_dir = LAYOUT.find(root, ["data/processed_questions", "processed_questions"])
    files = sorted(questions_dir.glob("*.json"))
    if not files:
        raise VSFAError(f"{NAME}: {questions_dir} has no <scenario>.json question files")
    needs_images = any(v in IMAGE_TYPES for v in variants)
    images_root = _images_root(root) if needs_images else None
    items: list[BenchmarkItem] = []
    for file in files:
        scenario = file.stem
        questions = LAYOUT.read_object(file, "question id")
        for variant in variants:
            folder = None
            if variant in IMAGE_TYPES:
                assert images_root is not None
                folder = images_root / scenario / variant
                if not folder.is_dir():
                    raise VSFAError(
                        f"MM-SafetyBench folder {root} has questions for {scenario} but no images "
                        f"under {folder.relative_to(root)}"
                    )
            for qid, record in questions.items():
                field = IMAGE_TYPES.get(variant, "Question")
                LAYOUT.require_fields(record, [field], f"{file} question {qid}")
                image = None
                if folder is not None:
                    found = resolve_image(folder / f"{qid}.jpg")
                    if found is None:
                        raise VSFAError(
                            f"{NAME}: image for {scenario} question {qid} is missing "
                            f"({folder / f'{qid}.jpg'})"
                        )
                    image = str(found)
                items.append(
                    BenchmarkItem(
                        benchmark=NAME,
                        id=f"{scenario}/{variant}/{qid}",
                        category=scenario,
                        image_path=image,
                        prompt=str(record[field]),
                        kind="harmful",
                        meta={
                            "variant": variant,
                            "key_phrase": record.get("Key Phrase"),
                            "disclaimer_is_safe": scenario in DISCLAIMER_SCENARIOS,
                        },
                    )
                )
    return LAYOUT.done(items, root)


@BENCHMARKS.register(NAME)
def mmsafety(path: str | os.PathLike | None = None) -> list[BenchmarkItem]:
    """MM-SafetyBench, all three image types and text-only."""
    return load_mmsafety(path)


@BENCHMARKS.register("mmsafety-sd-typo")
def mmsafety_sd_typo(path: str | os.PathLike | None = None) -> list[BenchmarkItem]:
    """MM-SafetyBench, SD+TYPO images only (the setting most papers report)."""
    return load_mmsafety(path, ("SD_TYPO",))
