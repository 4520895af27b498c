"""Watching the persona: during training, before it (screening data), and after deployment.

* :mod:`interp.monitor.signals`: the persona projection at the decision position, the selected
  latents' activation, the judge's exact comply share;
* :mod:`interp.monitor.training`: persona curves during fine-tuning (``vsfa train --monitor``),
  ``monitor.jsonl``; :mod:`interp.monitor.figure`: its plotly figure (``monitor_figure``);
* :mod:`interp.monitor.screen`: predicted persona shift of candidate images or VQA records
  (``vsfa data screen``);
* :mod:`interp.monitor.stream`: a streaming monitor of a deployed model (``vsfa monitor``) and
  its calibration (``vsfa monitor-calibrate``).

Importing the package registers the ``persona`` training monitor that ``TrainConfig.monitor``
turns on; the names below are imported on first use, so the CLI starts without torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from interp.lazy import lazy_getattr
from interp.train.config import TRAINING_MONITORS, TrainConfig


def _persona_monitor(config: TrainConfig, out: Path) -> Any:
    from interp.monitor.training import persona_monitor

    return persona_monitor(config, out)


TRAINING_MONITORS.add("persona", _persona_monitor)

_NAMES = {
    "interp.monitor.signals": ("PersonaSignal", "load_signal", "opening_share", "projections"),
    "interp.monitor.training": ("TrainingMonitor", "read_monitor"),
    "interp.monitor.figure": ("monitor_figure", "monitor_runs"),
    "interp.monitor.screen": ("screen",),
    "interp.monitor.stream": ("calibrate", "stream_monitor"),
}
_HOME = {name: module for module, names in _NAMES.items() for name in names}
__all__ = sorted(_HOME)
__getattr__ = lazy_getattr(__name__, _HOME)
