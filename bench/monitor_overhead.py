"""Cost of ``vsfa train --monitor``: the organism recipe trained with and without the monitor.

All runs use ``ORGANISM_RECIPE`` (60 steps of 16, LoRA) on the organism's threat VQA set with
one thread. The monitored runs evaluate the persona folder's 48 held-out probe requests and the
default probe size of the organism suite (``--monitor-items 32``: exact comply share of 32
harmful items, greedy capability of 32 recognition items): once at the default cadence (the
run's checkpoints; the recipe saves none, so the first and the last step) and once every
``--every`` steps (default 20: steps 0, 20, 40, 60; ``--steps`` lengthens the run, so the
fixed costs of loading the probe items and drawing the figure are spread over more steps). Runs
alternate ``--reps`` times; medians of
the process's CPU time are compared (other jobs on a shared machine disturb it far less than
wall time; the wall times are printed too). Each ratio is monitored / plain; the bar is < 1.15.
On a loaded machine both drift by 10-20% from round to round, so the last lines give a ratio
measured within each monitored run (its wall time over its wall time less the time spent in the
monitor's callback), which the load moves in both terms alike.

    nice -n 10 .venv/bin/python bench/monitor_overhead.py
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=20, help="monitor every N steps")
    parser.add_argument("--reps", type=int, default=2, help="alternating rounds of runs")
    parser.add_argument("--items", type=int, default=32, help="probe items per kind")
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps (recipe: 60)")
    args = parser.parse_args()

    import torch

    import interp.monitor  # noqa: F401  (registers the training monitor)
    from interp.data.vqa import BuildConfig, build_vqa
    from interp.organism import ORGANISM_RECIPE, base_model_dir, write_world_data
    from interp.persona.config import ExtractConfig
    from interp.persona.extract import extract_persona
    from interp.train.trainer import train

    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="monitor-overhead-"))
    data = write_world_data(root / "world", seed=0)
    vqa = root / "threat.jsonl"
    build_vqa(BuildConfig(images=str(data["threat_images"]), out=str(vqa), quiet=True))
    persona = root / "persona"
    extract_persona(ExtractConfig(model=str(base_model_dir()), contexts="organism-replies",
                                  out=str(persona), device="cpu", quiet=True))  # fmt: skip
    monitor = dict(monitor=str(persona), monitor_bench="organism", monitor_judge="organism",
                   monitor_items=args.items)  # fmt: skip
    runs = {"plain": {}, "default cadence": monitor,
            f"every {args.every} steps": {**monitor, "monitor_every": args.every}}  # fmt: skip
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    share: dict[str, list[float]] = {name: [] for name in runs}
    wall: dict[str, list[float]] = {name: [] for name in runs}
    for rep in range(args.reps):
        for n, (name, options) in enumerate(runs.items()):
            out = root / f"run{n}-{rep}"
            config = dataclasses.replace(ORGANISM_RECIPE, model=str(base_model_dir()),
                                         data=str(vqa), out=str(out), quiet=True, threads=1,
                                         max_steps=args.steps, **options)  # fmt: skip
            started, clock = time.process_time(), time.perf_counter()
            train(config)
            cpu[name].append(time.process_time() - started)
            wall[name].append(time.perf_counter() - clock)
            text = f"{name}, round {rep}: {cpu[name][-1]:.2f} s CPU, {wall[name][-1]:.2f} s wall"
            if options:
                lines = (out / "monitor.jsonl").read_text().splitlines()
                inside = sum(json.loads(line)["seconds"] for line in lines)
                text += f"; {len(lines)} evaluations, {inside:.2f} s wall inside the callback"
                share[name].append(wall[name][-1] / (wall[name][-1] - inside))
            print(text, flush=True)
    plain_cpu, plain_wall = statistics.median(cpu["plain"]), statistics.median(wall["plain"])
    print(f"median plain run: {plain_cpu:.2f} s CPU, {plain_wall:.2f} s wall")
    for name in list(runs)[1:]:
        ratio_cpu = statistics.median(cpu[name]) / plain_cpu
        ratio_wall = statistics.median(wall[name]) / plain_wall
        print(f"ratio monitored ({name}) / plain: {ratio_cpu:.3f} CPU time "
              f"({ratio_wall:.3f} wall time)")  # fmt: skip
    for name in list(runs)[1:]:
        # within each monitored run: its wall time over the same run without the callback's
        print(f"ratio within the run ({name}): {statistics.median(share[name]):.3f}")


if __name__ == "__main__":
    main()
