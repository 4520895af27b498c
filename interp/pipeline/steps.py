"""The runners' steps: each one runs unless its marker says its output is current.

A step's marker (``<out>/steps/<name>/manifest.json``) holds its config, the keys of the steps
it depends on, what it returned (the paths later steps read) and the content fingerprint of
those outputs (each file's hash; a folder's ``manifest.json``, which its stage rewrites whenever
it rewrites the folder). A step reruns when its config or an upstream key changed, when a path it
returned is gone or holds other content (an adapter retrained in place), or when forced. A
step's key covers its outputs' content, so a change upstream reruns everything downstream, and a
run that stopped half-way redoes only what it had not finished. Inputs keyed with
:meth:`Steps.key` (a base model folder) are keyed on their files' content. Hashes are reused
while a file's size, mtime and inode stay the same (``<out>/steps/files.json``).
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
from interp.fingerprint import Fingerprints

FILES = "files.json"


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
        self.prints = Fingerprints(_read_stats(self.out / "steps" / FILES))

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
        if not self.force and output_is_current(marker, manifest):
            recorded = read_json(marker / MANIFEST)
            outputs = recorded.get("outputs", {})
            if all(Path(p).exists() for p in paths_in(outputs)):
                content = self.outputs_key(outputs)
                if content == recorded.get("outputs_key"):  # none in an earlier version's
                    self.keys[name] = json_sha256([manifest_key(manifest), content])
                    self.echo(f"[{self.runner}] {name}: current, skipped")
                    return outputs
                self.echo(f"[{self.runner}] {name}: its outputs changed since it ran")
        self.echo(f"[{self.runner}] {name} ...")
        self.keys[name] = manifest_key(manifest)  # while it runs: its inputs' key
        started = time.time()
        outputs = make()
        seconds = time.time() - started
        self.timings[name] = seconds
        content = self.outputs_key(outputs)
        self.keys[name] = json_sha256([manifest_key(manifest), content])
        manifest.update(
            complete=True, outputs=outputs, outputs_key=content, seconds=round(seconds, 2)
        )
        write_json_atomic(marker / MANIFEST, manifest)
        self.echo(f"[{self.runner}] {name}: done in {seconds:.0f}s")
        return outputs

    def key(self, name: str, folder: str | os.PathLike) -> None:
        """Key an input folder on its files' content so steps can depend on it."""
        self.keys[name] = self.prints.folder(Path(folder))
        self._save_stats()

    def outputs_key(self, outputs: Any) -> str:
        """The content fingerprint of a step's outputs: each file's hash, each folder's
        ``manifest.json`` hash (``None`` for a folder without one, or a missing path)."""
        entries = []
        for path in paths_in(outputs):
            target = Path(path)
            if target.is_dir():
                target = target / MANIFEST
            entries.append([path, self.prints.file(target) if target.is_file() else None])
        self._save_stats()
        return json_sha256(entries)

    def _save_stats(self) -> None:
        known = {**self.prints.known, **self.prints.stats}
        if known != self.prints.known:
            self.prints.known = known
            write_json_atomic(self.out / "steps" / FILES, known)


def _read_stats(path: Path) -> dict[str, Any]:
    try:
        data = read_json(path) if path.exists() else {}
    except Exception:  # noqa: BLE001 - a damaged cache of hashes is only a slower run
        return {}
    return data if isinstance(data, dict) else {}


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
    """Content identity of a folder (its files' names and hashes), for skip checks."""
    return Fingerprints().folder(folder)


def fresh(folder: Path) -> Path:
    """Remove a step's old output folder before the step writes it again: a step only reruns
    when its inputs changed, and its output should hold nothing of the previous run."""
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
