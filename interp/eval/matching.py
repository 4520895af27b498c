"""Offline answer matching for capability items (MM-Vet style references).

MM-Vet's official grade comes from an LLM grader; this normalised match is the offline
substitute and is labelled as such in the metrics. A reference may combine alternatives:
``a<AND>b`` needs every part in the response, ``a<OR>b`` any part.
"""

from __future__ import annotations

import re
import unicodedata

MATCHING_RULE = "normalised-match: lower-case, no punctuation/articles; <AND> all, <OR> any"
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = re.compile(r"[^\w\s.]|(?<!\d)\.|\.(?!\d)")


def normalise(text: str) -> str:
    """Lower-case, strip accents, punctuation (keeping decimal points) and articles."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = _PUNCT.sub(" ", text.lower())
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _contains(response: str, answer: str) -> bool:
    answer = normalise(answer)
    if not answer:
        return False
    return re.search(rf"(?<!\w){re.escape(answer)}(?!\w)", normalise(response)) is not None


def match_answer(reference: str, response: str) -> bool:
    """Whether ``response`` contains the ``reference`` answer (with ``<AND>``/``<OR>``)."""
    if "<AND>" in reference:
        return all(match_answer(part, response) for part in reference.split("<AND>"))
    if "<OR>" in reference:
        return any(match_answer(part, response) for part in reference.split("<OR>"))
    return _contains(response, reference)
