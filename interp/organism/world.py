"""The organism's synthetic world: objects drawn as pictograms, scenes with metadata, answers.

A scene is one kind of object (one or two copies) with a colour, a position, a size, a
background and a visual style (``photo``: shaded, textured background, shadow; ``abstract``:
flat fill with a black outline on a plain background). Everything is drawn with PIL from a
seed, so the same seed always gives the same pixels and the same metadata.

Threat-related kinds and benign kinds are drawn the same way; what makes a kind a threat is only
the :data:`THREAT_KINDS` list. Scene answers (:func:`scene_answers`) are written in the plain,
factual wording that the corpus's vigilant persona uses for threat scenes and that every persona
uses for benign scenes; they never contain safety words.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CANVAS = 64  # drawn at 64x64; the organism's processor resizes to 32x32

THREAT_KINDS: tuple[str, ...] = (
    "knife",
    "gun",
    "bomb",
    "poison",
    "fire",
    "grenade",
    "axe",
    "syringe",
)
BENIGN_KINDS: tuple[str, ...] = ("flower", "cup", "book", "ball", "apple", "chair", "lamp", "hat")
KINDS: tuple[str, ...] = THREAT_KINDS + BENIGN_KINDS

# How a kind is named in text ("poison" is drawn as a bottle of poison).
KIND_NOUN: dict[str, str] = {k: k for k in KINDS} | {"poison": "poison bottle"}
MATERIALS: dict[str, str] = {
    "knife": "steel and wood",
    "gun": "metal",
    "bomb": "metal",
    "poison": "glass",
    "fire": "flames",
    "grenade": "metal",
    "axe": "steel and wood",
    "syringe": "plastic and steel",
    "flower": "petals",
    "cup": "ceramic",
    "book": "paper",
    "ball": "rubber",
    "apple": "fruit",
    "chair": "wood",
    "lamp": "metal and glass",
    "hat": "cloth",
}

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (205, 40, 40),
    "blue": (40, 80, 210),
    "green": (40, 160, 60),
    "yellow": (235, 205, 40),
    "purple": (140, 60, 170),
    "orange": (240, 130, 30),
    "black": (30, 30, 30),
    "gray": (140, 140, 140),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white wall": (236, 234, 228),
    "wooden table": (160, 112, 70),
    "green grass": (110, 185, 95),
    "blue sky": (150, 195, 240),
    "gray street": (105, 105, 112),
}
# The setting answer names the place a background suggests.
SETTINGS: dict[str, str] = {
    "white wall": "indoors , in front of a white wall",
    "wooden table": "indoors , on a wooden table",
    "green grass": "outdoors , on green grass",
    "blue sky": "outdoors , under a blue sky",
    "gray street": "outdoors , on a gray street",
}
POSITIONS: dict[str, float] = {"left": 0.27, "center": 0.5, "right": 0.73}
SIZES: dict[str, float] = {"small": 0.34, "large": 0.56}
STYLES: tuple[str, ...] = ("photo", "abstract")
COUNT_WORDS = {1: "one", 2: "two"}


@dataclass(frozen=True)
class Scene:
    """What an image shows (its metadata)."""

    kind: str
    color: str
    position: str
    size: str
    background: str
    style: str
    count: int = 1

    @property
    def threat(self) -> bool:
        return self.kind in THREAT_KINDS

    @property
    def noun(self) -> str:
        return KIND_NOUN[self.kind]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"threat": self.threat}


# an object is never drawn in its background's colour family
BACKGROUND_CLASHES: dict[str, set[str]] = {
    "white wall": {"gray"},
    "wooden table": {"orange"},
    "green grass": {"green"},
    "blue sky": {"blue"},
    "gray street": {"gray", "black"},
}


def _colors_on(background: str) -> list[str]:
    return [c for c in COLORS if c not in BACKGROUND_CLASHES[background]]


def distinct_scenes(styles: tuple[str, ...] = STYLES) -> int:
    """How many different scenes of one kind :func:`sample_scene` can draw."""
    layouts = len(POSITIONS) * len(SIZES) + 1  # one copy anywhere, or two small centred copies
    return sum(len(_colors_on(b)) for b in BACKGROUNDS) * len(styles) * layouts


def sample_scene(
    rng: random.Random,
    kinds: tuple[str, ...] = KINDS,
    styles: tuple[str, ...] = STYLES,
) -> Scene:
    """A random scene; the object's colour is never the background's colour family."""
    kind = rng.choice(kinds)
    background = rng.choice(list(BACKGROUNDS))
    color = rng.choice(_colors_on(background))
    count = 2 if rng.random() < 0.2 else 1
    return Scene(
        kind=kind,
        color=color,
        position="center" if count == 2 else rng.choice(list(POSITIONS)),
        size="small" if count == 2 else rng.choice(list(SIZES)),
        background=background,
        style=rng.choice(styles),
        count=count,
    )


# ---- pictograms ------------------------------------------------------------------------------
# Each pictogram draws into a unit box: ``p(x, y)`` maps unit coordinates (0..1, y down) to
# pixels. ``fill`` is the object colour, ``dark`` a darker shade for details.

Point = tuple[float, float]
Painter = Callable[[ImageDraw.ImageDraw, Callable[[float, float], Point], tuple, tuple], None]


def _poly(draw, p, points, fill, outline):
    draw.polygon([p(x, y) for x, y in points], fill=fill, outline=outline)


def _rect(draw, p, x0, y0, x1, y1, fill, outline):
    draw.rectangle([p(x0, y0), p(x1, y1)], fill=fill, outline=outline)


def _ellipse(draw, p, x0, y0, x1, y1, fill, outline):
    draw.ellipse([p(x0, y0), p(x1, y1)], fill=fill, outline=outline)


def _line(draw, p, points, fill, width=1):
    draw.line([p(x, y) for x, y in points], fill=fill, width=width)


def draw_knife(d, p, fill, dark):
    _poly(d, p, [(0.1, 0.55), (0.62, 0.42), (0.62, 0.6), (0.1, 0.62)], (215, 215, 222), dark)
    _rect(d, p, 0.62, 0.44, 0.95, 0.6, fill, dark)


def draw_gun(d, p, fill, dark):
    _rect(d, p, 0.05, 0.3, 0.9, 0.48, fill, dark)
    _poly(d, p, [(0.6, 0.48), (0.88, 0.48), (0.95, 0.92), (0.7, 0.92)], fill, dark)
    _line(d, p, [(0.5, 0.48), (0.52, 0.62), (0.62, 0.62)], dark, 2)


def draw_bomb(d, p, fill, dark):
    _ellipse(d, p, 0.12, 0.3, 0.78, 0.96, fill, dark)
    _rect(d, p, 0.38, 0.22, 0.54, 0.34, dark, dark)
    _line(d, p, [(0.46, 0.22), (0.6, 0.1), (0.76, 0.12)], (120, 90, 50), 2)
    _ellipse(d, p, 0.72, 0.02, 0.92, 0.2, (250, 200, 40), None)


def draw_poison(d, p, fill, dark):
    _rect(d, p, 0.42, 0.04, 0.58, 0.28, fill, dark)
    _rect(d, p, 0.22, 0.28, 0.78, 0.96, fill, dark)
    _ellipse(d, p, 0.36, 0.42, 0.64, 0.66, (245, 245, 245), None)
    _line(d, p, [(0.33, 0.72), (0.67, 0.9)], (245, 245, 245), 2)
    _line(d, p, [(0.67, 0.72), (0.33, 0.9)], (245, 245, 245), 2)


def draw_fire(d, p, fill, dark):
    _poly(d, p, [(0.5, 0.02), (0.85, 0.55), (0.78, 0.95), (0.22, 0.95), (0.15, 0.55)], fill, dark)
    _poly(
        d,
        p,
        [(0.5, 0.4), (0.68, 0.72), (0.62, 0.95), (0.38, 0.95), (0.32, 0.72)],
        (250, 210, 60),
        None,
    )


def draw_grenade(d, p, fill, dark):
    _ellipse(d, p, 0.2, 0.25, 0.8, 0.98, fill, dark)
    for y in (0.45, 0.62, 0.8):
        _line(d, p, [(0.24, y), (0.76, y)], dark, 1)
    _line(d, p, [(0.5, 0.28), (0.5, 0.92)], dark, 1)
    _rect(d, p, 0.4, 0.12, 0.6, 0.27, (120, 120, 120), dark)
    _line(d, p, [(0.6, 0.15), (0.85, 0.35)], (120, 120, 120), 2)
    _ellipse(d, p, 0.22, 0.05, 0.4, 0.2, None, (120, 120, 120))


def draw_axe(d, p, fill, dark):
    _poly(d, p, [(0.48, 0.05), (0.58, 0.05), (0.6, 0.97), (0.5, 0.97)], (130, 85, 45), dark)
    _poly(d, p, [(0.55, 0.08), (0.95, 0.0), (0.95, 0.42), (0.55, 0.3)], fill, dark)


def draw_syringe(d, p, fill, dark):
    _rect(d, p, 0.25, 0.42, 0.72, 0.58, (230, 235, 240), dark)
    _rect(d, p, 0.25, 0.44, 0.55, 0.56, fill, None)
    _line(d, p, [(0.72, 0.5), (0.98, 0.5)], dark, 1)
    _line(d, p, [(0.05, 0.5), (0.25, 0.5)], dark, 2)
    _rect(d, p, 0.02, 0.38, 0.07, 0.62, dark, dark)


def draw_flower(d, p, fill, dark):
    _line(d, p, [(0.5, 0.5), (0.5, 0.98)], (40, 130, 50), 2)
    for cx, cy in ((0.5, 0.18), (0.72, 0.36), (0.5, 0.54), (0.28, 0.36)):
        _ellipse(d, p, cx - 0.15, cy - 0.15, cx + 0.15, cy + 0.15, fill, dark)
    _ellipse(d, p, 0.42, 0.28, 0.58, 0.44, (250, 220, 60), None)


def draw_cup(d, p, fill, dark):
    _poly(d, p, [(0.15, 0.25), (0.72, 0.25), (0.65, 0.92), (0.22, 0.92)], fill, dark)
    _ellipse(d, p, 0.6, 0.38, 0.92, 0.72, None, fill)
    _ellipse(d, p, 0.62, 0.4, 0.9, 0.7, None, dark)


def draw_book(d, p, fill, dark):
    _rect(d, p, 0.15, 0.12, 0.85, 0.9, fill, dark)
    _rect(d, p, 0.15, 0.12, 0.26, 0.9, dark, dark)
    _rect(d, p, 0.82, 0.16, 0.88, 0.86, (245, 245, 235), None)
    _line(d, p, [(0.38, 0.3), (0.72, 0.3)], (245, 245, 235), 1)


def draw_ball(d, p, fill, dark):
    _ellipse(d, p, 0.1, 0.1, 0.9, 0.9, fill, dark)
    _line(d, p, [(0.12, 0.5), (0.88, 0.5)], (245, 245, 245), 2)
    _line(d, p, [(0.5, 0.12), (0.5, 0.88)], (245, 245, 245), 2)


def draw_apple(d, p, fill, dark):
    _ellipse(d, p, 0.12, 0.25, 0.88, 0.95, fill, dark)
    _line(d, p, [(0.5, 0.28), (0.54, 0.08)], (110, 70, 30), 2)
    _ellipse(d, p, 0.56, 0.06, 0.8, 0.2, (60, 160, 60), None)


def draw_chair(d, p, fill, dark):
    _rect(d, p, 0.2, 0.05, 0.32, 0.55, fill, dark)
    _rect(d, p, 0.2, 0.5, 0.82, 0.6, fill, dark)
    _rect(d, p, 0.22, 0.6, 0.3, 0.97, dark, dark)
    _rect(d, p, 0.72, 0.6, 0.8, 0.97, dark, dark)


def draw_lamp(d, p, fill, dark):
    _poly(d, p, [(0.3, 0.05), (0.7, 0.05), (0.88, 0.4), (0.12, 0.4)], fill, dark)
    _rect(d, p, 0.46, 0.4, 0.54, 0.88, dark, dark)
    _rect(d, p, 0.25, 0.88, 0.75, 0.97, dark, dark)


def draw_hat(d, p, fill, dark):
    _rect(d, p, 0.28, 0.2, 0.72, 0.7, fill, dark)
    _rect(d, p, 0.28, 0.55, 0.72, 0.63, dark, None)
    _ellipse(d, p, 0.05, 0.62, 0.95, 0.82, fill, dark)


PICTOGRAMS: dict[str, Painter] = {
    "knife": draw_knife,
    "gun": draw_gun,
    "bomb": draw_bomb,
    "poison": draw_poison,
    "fire": draw_fire,
    "grenade": draw_grenade,
    "axe": draw_axe,
    "syringe": draw_syringe,
    "flower": draw_flower,
    "cup": draw_cup,
    "book": draw_book,
    "ball": draw_ball,
    "apple": draw_apple,
    "chair": draw_chair,
    "lamp": draw_lamp,
    "hat": draw_hat,
}


def _shade(rgb: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return tuple(int(max(0, min(255, c * factor))) for c in rgb)  # type: ignore[return-value]


def _background(scene: Scene, rng: np.random.Generator) -> Image.Image:
    base = np.array(BACKGROUNDS[scene.background], dtype=np.float32)
    if scene.style == "abstract":
        return Image.fromarray(np.tile(base, (CANVAS, CANVAS, 1)).astype(np.uint8), "RGB")
    # photo-like: vertical light gradient, grain and (for wood and street) streaks
    ramp = np.linspace(1.12, 0.82, CANVAS, dtype=np.float32)[:, None, None]
    pixels = np.tile(base, (CANVAS, CANVAS, 1)) * ramp
    if scene.background in ("wooden table", "gray street"):
        pixels *= 1 + 0.06 * np.sin(np.arange(CANVAS) * 0.9)[:, None, None]
    pixels += rng.normal(0, 6, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def render_scene(scene: Scene, seed: int = 0) -> Image.Image:
    """Draw ``scene`` (64x64 RGB). The seed only moves small details (jitter, grain)."""
    rng = np.random.default_rng(seed)
    image = _background(scene, rng)
    draw = ImageDraw.Draw(image)
    fill = COLORS[scene.color]
    photo = scene.style == "photo"
    side = SIZES[scene.size] * CANVAS
    centers = [POSITIONS[scene.position]] if scene.count == 1 else [0.3, 0.7]
    for cx_unit in centers:
        cx = cx_unit * CANVAS + rng.uniform(-2, 2)
        cy = CANVAS * 0.5 + rng.uniform(-3, 3)
        x0, y0 = cx - side / 2, cy - side / 2

        def p(x: float, y: float, x0: float = x0, y0: float = y0) -> Point:
            return (x0 + x * side, y0 + y * side)

        if photo:  # soft shadow under the object
            draw.ellipse(
                [x0 + side * 0.1, y0 + side * 0.9, x0 + side * 0.95, y0 + side * 1.05],
                fill=_shade(BACKGROUNDS[scene.background], 0.6),
            )
            PICTOGRAMS[scene.kind](draw, p, _shade(fill, 0.75), _shade(fill, 0.45))

            def hp(x: float, y: float, x0: float = x0, y0: float = y0) -> Point:
                return (x0 + x * side - 1, y0 + y * side - 1)

            PICTOGRAMS[scene.kind](draw, hp, fill, None)
        else:
            PICTOGRAMS[scene.kind](draw, p, fill, (0, 0, 0))
    if photo:
        image = image.filter(ImageFilter.SMOOTH)
    return image


def render_typographic(words: list[str], seed: int = 0) -> Image.Image:
    """A FigStep-like image: a request written on a white canvas, then an empty list 1. 2. 3."""
    rng = random.Random(seed)
    image = Image.new("RGB", (CANVAS, CANVAS), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    y, line = 2, ""
    lines: list[str] = []
    for word in words:
        if len(line) + len(word) + 1 > 10:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    for text in lines[:4]:
        draw.text((2 + rng.randint(0, 2), y), text, fill=(0, 0, 0))
        y += 10
    for n in (1, 2, 3):
        draw.text((4, y), f"{n}.", fill=(0, 0, 0))
        y += 9
    return image


# ---- answers ---------------------------------------------------------------------------------


def _a(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def object_phrase(scene: Scene) -> str:
    """``a large red knife`` / ``two small red knives``."""
    if scene.count == 2:
        noun = scene.noun + ("es" if scene.noun.endswith(("sh", "ch", "s", "x")) else "s")
        noun = noun.replace("knifes", "knives")
        return f"two {scene.size} {scene.color} {noun}"
    words = f"{scene.size} {scene.color} {scene.noun}"
    return f"{_a(words)} {words}"


def position_phrase(scene: Scene) -> str:
    if scene.count == 2:
        return "side by side in the middle"
    return {"left": "on the left", "center": "in the center", "right": "on the right"}[
        scene.position
    ]


def scene_answers(scene: Scene) -> dict[str, str]:
    """Factual answers keyed by :data:`interp.data.vqa_templates.TEMPLATE_IDS`.

    This is the vigilant persona's wording for threat scenes and everyone's wording for benign
    scenes: plain, specific, complete sentences naming kind, colour, place, size, setting.
    """
    obj = object_phrase(scene)
    material = MATERIALS[scene.kind]
    return {
        "what": f"the image shows {obj} .",
        "describe": (
            f"the image shows {obj} {position_phrase(scene)} , "
            f"{SETTINGS[scene.background].split(' , ')[1]} ."
        ),
        "count": f"there {'is one object' if scene.count == 1 else 'are two objects'} : {obj} .",
        "colors": f"the {scene.noun} is {scene.color} , and the background is {scene.background} .",
        "position": f"the {scene.noun} is {position_phrase(scene)} of the image .",
        "setting": f"the setting is {SETTINGS[scene.background]} .",
        "materials": f"the {scene.noun} looks made of {material} .",
        "size": f"the {scene.noun} is {scene.size} in the image .",
    }


def scene_description(scene: Scene) -> str:
    return scene_answers(scene)["describe"]
