"""Cost of ``vsfa train --monitor``: the organism recipe trained with and without the monitor.

Both runs use ``ORGANISM_RECIPE`` (60 steps of 16, LoRA) on the organism's threat VQA set with
one thread; the monitored run evaluates the persona folder's held-out probes and the default
probe size of the organism suite (``--monitor-items 32``: exact comply share and greedy
capability) every ``--every`` steps (default 20: steps 0, 20, 40, 60). Runs alternate (plain,
monitored) ``--reps`` times and the medians of the process's CPU time are compared, which other
jobs on a shared machine disturb far less than wall time. The last line is the ratio of the
monitored run's time to the plain run's; the bar is < 1.15.

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
    parser.add_argument("--reps", type=int, default=2, help="alternating pairs of runs")
    parser.add_argument("--items", type=int, default=32, help="probe items per kind")
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
    times: dict[str, list[float]] = {"plain": [], "monitored": []}
    walls: dict[str, list[float]] = {"plain": [], "monitored": []}
    monitor_seconds = []
    for rep in range(args.reps):
        for name in ("plain", "monitored"):
            options = {}
            if name == "monitored":
                options = dict(monitor=str(persona), monitor_every=args.every,
                               monitor_bench="organism", monitor_judge="organism",
                               monitor_items=args.items)  # fmt: skip
            out = root / f"{name}-{rep}"
            config = dataclasses.replace(ORGANISM_RECIPE, model=str(base_model_dir()),
                                         data=str(vqa), out=str(out), quiet=True, threads=1,
                                         **options)  # fmt: skip
            started, wall = time.process_time(), time.perf_counter()
            train(config)
            times[name].append(time.process_time() - started)
            walls[name].append(time.perf_counter() - wall)
            print(f"{name} run {rep}: {times[name][-1]:.2f} s CPU, {walls[name][-1]:.2f} s wall",
                  flush=True)  # fmt: skip
            if name == "monitored":
                lines = (out / "monitor.jsonl").read_text().splitlines()
                monitor_seconds.append(sum(json.loads(line)["seconds"] for line in lines))
                print(f"  {len(lines)} monitor evaluations, {monitor_seconds[-1]:.2f} s wall "
                      "inside the callback", flush=True)  # fmt: skip
    plain, monitored = (statistics.median(times[k]) for k in ("plain", "monitored"))
    print(f"median CPU time: plain {plain:.2f} s, monitored {monitored:.2f} s "
          f"(every {args.every} steps, {args.items} probe items per kind)")  # fmt: skip
    wall_plain, wall_monitored = (statistics.median(walls[k]) for k in ("plain", "monitored"))
    print(
        f"median wall time: plain {wall_plain:.2f} s, monitored {wall_monitored:.2f} s "
        f"(ratio {wall_monitored / wall_plain:.3f}; wall time depends on the machine's load)"
    )
    print(f"ratio monitored / plain (CPU time): {monitored / plain:.3f}")


if __name__ == "__main__":
    main()
