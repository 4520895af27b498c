"""CLI: ``vsfa monitor`` (stream prompts through a deployed model, log the persona, alert) and
``vsfa monitor-calibrate`` (the alert threshold from base and tuned model). ``vsfa data
screen`` is mounted by :mod:`interp.data.commands`; ``vsfa train --monitor`` by the train
stage (importing this package registers the training monitor)."""

from __future__ import annotations

import typer

from interp.monitor.config import CalibrateConfig, ScreenConfig, StreamConfig
from interp.options import config_command


@config_command(StreamConfig, short={"model": "-m", "out": "-o"})
def monitor_command(config: StreamConfig) -> None:
    """Stream prompts (JSONL file or - for stdin): persona projection per prompt, optional
    reply and verdict, an alert line when the rolling mean crosses the threshold."""
    from interp.monitor.stream import stream_monitor

    counts = stream_monitor(config)
    typer.echo(
        f"monitored {counts['prompts']} prompts ({counts['malformed']} malformed lines skipped, "
        f"{counts['alerts']} alerts) into {config.out}",
        err=True,
    )


@config_command(CalibrateConfig, short={"model": "-m", "out": "-o"})
def calibrate_command(config: CalibrateConfig) -> None:
    """The monitor's alert threshold: base and tuned projections on calibration prompts."""
    from interp.monitor.stream import calibrate

    result = calibrate(config)
    typer.echo(
        f"base {result['base']['mean']:.4f}, tuned {result['tuned']['mean']:.4f}: threshold "
        f"{result['threshold']:.4f} at {result['hook']} ({result['n_prompts']} prompts)"
    )


@config_command(ScreenConfig, short={"images": "-i", "model": "-m", "out": "-o", "quiet": "-q"})
def screen_command(config: ScreenConfig) -> None:
    """Rank candidate images (or VQA records) by predicted persona shift: the projection
    difference between the dataset's answer and the model's own at the answer tokens."""
    from interp.monitor.screen import screen

    summary = screen(config)
    shift = summary["shift"]
    typer.echo(
        f"screened {summary['n_units']} {summary['unit']}s ({summary['n_records']} records): "
        f"shift {shift['min']:.4f} to {shift['max']:.4f}, mean {shift['mean']:.4f}; "
        f"ranked in {config.out}"
    )


def register(app: typer.Typer) -> None:
    from interp.data.commands import data_app

    app.command("monitor")(monitor_command)
    app.command("monitor-calibrate")(calibrate_command)
    data_app.command("screen")(screen_command)
