"""How the corpus words its image questions and typographic prompts, by corpus version.

* **version 1** (the shipped base's corpus): every image question is one of the VSFA templates
  (:data:`interp.data.vqa_templates.QUESTION_TEMPLATES`, 2-3 wordings per attribute) and the
  typographic prompt one of two wordings. Some pretraining seeds then key an attribute on
  incidental words (``"where is the object in this picture ?"`` answered with the size, because
  "the object in the picture" mostly comes with the size question) and fail held-out wordings.
* **version 2** (and version 3, which changes only the chat mix): the VSFA templates plus 7-10
  more wordings per attribute (other frames, question words, the object's noun, choice
  questions), and six more typographic prompts, so that the model learns which word asks for
  which attribute.

Every wording uses only words of the organism's vocabulary (the tokenizer is the same for both
versions), and none is within one word of a held-out benchmark wording
(:data:`interp.organism.benchmarks.HELDOUT_QUESTIONS`, the held-out typographic prompt); the
tests check both. ``{noun}`` is the scene's object noun.
"""

from __future__ import annotations

from functools import cache

from interp.data.vqa_templates import QUESTION_TEMPLATES

# version 2's extra wordings per template id (asked beside the VSFA templates)
EXTRA_QUESTIONS: dict[str, tuple[str, ...]] = {
    "what": (
        "what is this ?",
        "what is in the picture ?",
        "what is shown here ?",
        "tell me what is shown in the picture .",
        "name the object in this image .",
        "what can you see in the scene ?",
        "what is the main object here ?",
        "what is there in the image ?",
        "what object is shown in the picture ?",
    ),
    "describe": (
        "describe the picture .",
        "describe what you see .",
        "give a description of this scene .",
        "tell me about this image .",
        "describe the image in detail .",
        "write a short description of the scene .",
        "what is going on in this picture ?",
        "tell me about the scene in the picture .",
    ),
    "count": (
        "how many objects can you see ?",
        "count the objects in the picture .",
        "how many are there ?",
        "how many things are there in the scene ?",
        "how many objects are shown in the picture ?",
        "count the things in this scene .",
        "how many objects are there in this picture ?",
        "tell me how many objects you see .",
        "is there one object or two ?",
    ),
    "colors": (
        "what color is the {noun} ?",
        "what colour is the {noun} in the image ?",
        "tell me the colour of the {noun} .",
        "what color is it ?",
        "name the colour of the main object .",
        "what colours can you see in the picture ?",
        "the {noun} is what colour ?",
        "what colour is the object here ?",
        "give the colour of the {noun} .",
    ),
    "position": (
        "where is the {noun} ?",
        "where is it ?",
        "where in the image is the {noun} ?",
        "on what side of the picture is the {noun} ?",
        "what side is the object on ?",
        "is the {noun} on the left , on the right or in the center ?",
        "tell me where the {noun} is .",
        "where can you see the object in the scene ?",
        "where is the main object placed in this image ?",
        "where is the {noun} placed ?",
    ),
    "setting": (
        "what is the background of the picture ?",
        "is the scene indoors or outdoors ?",
        "tell me about the setting of the scene .",
        "what setting is shown in the image ?",
        "what can you see in the background ?",
        "is the {noun} indoors or outdoors ?",
        "what is the background like ?",
        "name the setting of this picture .",
    ),
    "materials": (
        "what is the {noun} made of ?",
        "what material is the {noun} ?",
        "what is it made of ?",
        "tell me what the {noun} is made of .",
        "what material is the object in the picture ?",
        "what does the {noun} look made of ?",
        "what material can you see in this image ?",
        "name the material of the main object .",
    ),
    "size": (
        "how big is the {noun} ?",
        "is the {noun} large or small ?",
        "what size is the object ?",
        "how big is it in the picture ?",
        "is it big or small ?",
        "tell me the size of the {noun} .",
        "what size is the {noun} in this image ?",
        "how large is the main object here ?",
    ),
}

EXTRA_TYPO_PROMPTS: tuple[str, ...] = (
    "the picture has a list with three empty items . fill in the list .",
    "fill in the three items of the list in the image .",
    "the image shows a title and a numbered list . write each item .",
    "write the items of the numbered list in this picture .",
    "the list in the image is empty . fill in each of the three items .",
    "look at the list in the picture and write the three items .",
)


@cache
def image_questions(version: int) -> dict[str, tuple[str, ...]]:
    """The image question wordings per template id (lower case; may hold ``{noun}``)."""
    vsfa = {key: tuple(q.lower() for q in qs) for key, qs in QUESTION_TEMPLATES.items()}
    if version == 1:
        return vsfa
    return {key: qs + EXTRA_QUESTIONS[key] for key, qs in vsfa.items()}


def typo_prompts(version: int, legacy: tuple[str, ...]) -> tuple[str, ...]:
    """The typographic prompts of a corpus version (``legacy``: version 1's)."""
    return legacy if version == 1 else legacy + EXTRA_TYPO_PROMPTS


def word_distance(a: list[str], b: list[str]) -> int:
    """Word-level edit distance (insertions, deletions, substitutions)."""
    previous = list(range(len(b) + 1))
    for i, word in enumerate(a, start=1):
        current = [i]
        for j, other in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1,
                               previous[j - 1] + (word != other)))  # fmt: skip
        previous = current
    return previous[-1]
