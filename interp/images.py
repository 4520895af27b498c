"""Reading images with clear errors for missing or corrupt files."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from interp.errors import VSFAError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")


def open_image(path: str | os.PathLike) -> Image.Image:
    """Open an image as RGB, fully decoded, or raise a :class:`VSFAError` naming the file."""
    path = Path(path)
    if not path.exists():
        raise VSFAError(f"image {path} does not exist")
    if path.is_dir():
        raise VSFAError(f"image path {path} is a folder; expected an image file")
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        reason = f"{type(error).__name__}: {error}"
        raise VSFAError(f"{path} is not a readable image ({reason})") from None


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted, or a clear error if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VSFAError(f"image folder {folder} does not exist or is not a folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise VSFAError(f"image folder {folder} has no images ({', '.join(IMAGE_SUFFIXES)})")
    return files
