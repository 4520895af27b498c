"""Start-up cost of the ``vsfa`` command: ``vsfa --help`` against ``python -c "import torch"``.

Both are whole new processes, run in interleaved rounds so drifts in machine load hit both
alike; medians of wall time are reported. ``import torch`` is the reference because every real
command needs it anyway: a CLI that starts in about the time torch takes to import is not
paying for libraries (sae_lens, transformers, peft) its ``--help`` never uses. The last line is
the ratio; the bar is <= 1.5.

    nice -n 10 .venv/bin/python bench/cli_startup.py            # 7 rounds
    .venv/bin/python bench/cli_startup.py --rounds 15 --command "vsfa sae train --help"
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path


def wall_time(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def vsfa_argv(command: str) -> list[str]:
    """``vsfa ...`` as this interpreter's entry point (the venv's script when it exists)."""
    words = shlex.split(command)
    script = Path(sys.executable).with_name("vsfa")
    if words[0] == "vsfa":
        words = [str(script)] if script.exists() else [sys.executable, "-m", "interp.cli"]
        words += shlex.split(command)[1:]
    return words


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--command", default="vsfa --help", help="the command to time")
    args = parser.parse_args()

    cli = vsfa_argv(args.command)
    reference = [sys.executable, "-c", "import torch"]
    wall_time(cli), wall_time(reference)  # warm the file cache for both
    cli_times, torch_times = [], []
    for _ in range(args.rounds):
        cli_times.append(wall_time(cli))
        torch_times.append(wall_time(reference))
    cli_median, torch_median = statistics.median(cli_times), statistics.median(torch_times)
    print(f"{args.command}: median {cli_median:.3f} s (min {min(cli_times):.3f})")
    print(f"import torch: median {torch_median:.3f} s (min {min(torch_times):.3f})")
    print(f"ratio {cli_median / torch_median:.3f}")


if __name__ == "__main__":
    main()
