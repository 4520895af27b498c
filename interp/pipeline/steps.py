"""The runners' steps: each one runs unless its marker says its output is current.

A step's marker (``<out>/steps/<name>/manifest.json``) holds its config, the keys of the steps
it depends on and what it returned (the paths later steps read). A step reruns when its config
or an upstream key changed, when a path it returned is gone, or when forced; so a change
upstream reruns everything downstream, and a run that stopped half-way redoes only what it
had not finished.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from interp.artifacts import (
    MANIFEST,
    json_sha256,
    make_manifest,
    manifest_key,
    output_is_current,
    read_json,
    write_json_atomic,
)


class Steps:
    """The steps of one runner (``demo`` or ``run``) writing under ``out``."""

    def __init__(
        self,
        out: str | os.PathLike,
        runner: str,
        *,
        force: bool = False,
        echo: Callable[[str], None] = print,
    ) -> None:
        self.out = Path(out)
        self.runner = runner
        self.force = force
        self.echo = echo
        self.keys: dict[str, str] = {}
        """manifest key of every step run or skipped so far (and of inputs set with ``key``)"""
        self.timings: dict[str, float] = {}
        """seconds of every step that ran"""

    def run(
        self,
        name: str,
        config: dict[str, Any],
        make: Callable[[], dict[str, Any]],
        depends: Sequence[str] = (),
    ) -> dict[str, Any]:
        """``make()`` unless the step is current; returns its outputs either way."""
        marker = self.out / "steps" / name
        inputs = {dep: self.keys[dep] for dep in depends}
        manifest = make_manifest(f"{self.runner}/{name}", config, inputs=inputs)
        self.keys[name] = manifest_key(manifest)
        if not self.force and output_is_current(marker, manifest):
            outputs = read_json(marker / MANIFEST).get("outputs", {})
            if all(Path(p).exists() for p in paths_in(outputs)):
                self.echo(f"[{self.runner}] {name}: current, skipped")
                return outputs
        self.echo(f"[{self.runner}] {name} ...")
        started = time.time()
        outputs = make()
        seconds = time.time() - started
        self.timings[name] = seconds
        manifest.update(complete=True, outputs=outputs, seconds=round(seconds, 2))
        write_json_atomic(marker / MANIFEST, manifest)
        self.echo(f"[{self.runner}] {name}: done in {seconds:.0f}s")
        return outputs

    def key(self, name: str, folder: str | os.PathLike) -> None:
        """Key an input folder (names, sizes and mtimes) so steps can depend on it."""
        self.keys[name] = folder_key(Path(folder))


def paths_in(outputs: Any) -> list[str]:
    """Every filesystem path recorded in a step's outputs (strings that look like paths)."""
    found: list[str] = []
    if isinstance(outputs, dict):
        for value in outputs.values():
            found += paths_in(value)
    elif isinstance(outputs, list):
        for value in outputs:
            found += paths_in(value)
    elif isinstance(outputs, str) and os.sep in outputs:
        found.append(outputs)
    return found


def folder_key(folder: Path) -> str:
    """Cheap identity of a folder (names, sizes and mtimes), for skip checks."""
    entries = sorted(
        (str(p.relative_to(folder)), p.stat().st_size, int(p.stat().st_mtime))
        for p in folder.rglob("*")
        if p.is_file()
    )
    return json_sha256(entries)


def fresh(folder: Path) -> Path:
    """Remove a step's old output folder: a step only reruns when its inputs changed, and the
    stages' own resume checks key on paths, not on the weights behind them."""
    if folder.exists():
        shutil.rmtree(folder)
    return folder


def world_data(
    steps: Steps, world: Any, out: Path, seed: int, depends: Sequence[str] = ()
) -> dict[str, str]:
    """The step ``world``: ``world.write_data(out, seed)`` (a :class:`~interp.pipeline.worlds.
    World`), written once per world and seed."""
    return steps.run(
        "world",
        {"world": world.name, "seed": seed},
        lambda: {key: str(path) for key, path in world.write_data(out, seed).items()},
        depends,
    )
