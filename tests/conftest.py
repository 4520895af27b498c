"""Shared fixtures: tiny random models of every family, built once per test session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from interp.models.tiny import build_tiny_vlm, tiny_families  # noqa: E402

# Tiny models run faster on one thread than on two, and the suite does not fight itself for cores.
torch.set_num_threads(1)

ALL_FAMILIES = tiny_families()


@pytest.fixture
def one_thread():
    """One torch thread for the test, restored after it (SAE tests on tiny matrices: on a shared,
    oversubscribed CPU, OpenMP threads only add waiting)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """``tiny_model_dir(family) -> Path`` of a saved tiny model, built once per session."""
    built: dict[str, object] = {}

    def get(family: str):
        if family not in built:
            built[family] = build_tiny_vlm(family, tmp_path_factory.mktemp(f"tiny-{family}"))
        return built[family]

    return get


@pytest.fixture(scope="session")
def tiny_vlm(tiny_model_dir):
    """``tiny_vlm(family) -> VLM`` loaded on the CPU in float32, cached per session."""
    from interp.models import load_vlm

    loaded: dict[str, object] = {}

    def get(family: str):
        if family not in loaded:
            loaded[family] = load_vlm(tiny_model_dir(family), device="cpu", dtype="float32")
        return loaded[family]

    return get
