"""Memory of ``vsfa monitor``: peak RSS after 1,000 and after 10,000 streamed organism prompts.

The organism's benchmark prompts (with their images) are streamed, cycled, through
:func:`interp.monitor.stream.stream_monitor` with the shipped base and a persona folder of it
(``organism-replies`` contexts), one log line per prompt, batches of 16, a rolling window of 50.
The peak resident set size (``getrusage``) is read when the 1,000th and the 10,000th line are
handed over. The bar: the peak grows by less than 100 MB from 1,000 to 10,000 prompts.

    nice -n 10 .venv/bin/python bench/monitor_memory.py
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import tempfile
import time
from pathlib import Path


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=10_000)
    parser.add_argument("--first", type=int, default=1_000)
    args = parser.parse_args()

    import torch

    from interp.data.benchmarks import load_benchmark
    from interp.monitor.config import StreamConfig
    from interp.monitor.stream import stream_monitor
    from interp.organism import base_model_dir
    from interp.persona.config import ExtractConfig
    from interp.persona.extract import extract_persona

    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="monitor-memory-"))
    persona = root / "persona"
    extract_persona(ExtractConfig(model=str(base_model_dir()), contexts="organism-replies",
                                  out=str(persona), device="cpu", quiet=True))  # fmt: skip
    items = load_benchmark("organism", None)
    peaks: dict[int, float] = {}

    def lines():
        for n in range(args.prompts):
            if n == args.first:
                peaks[args.first] = peak_mb()
            item = items[n % len(items)]
            yield json.dumps({"id": f"{n}", "prompt": item.prompt, "image": item.image_path})
        peaks[args.prompts] = peak_mb()

    config = StreamConfig(model=str(base_model_dir()), persona=str(persona), prompts="-",
                          out=str(root / "log.jsonl"), threshold=0.0, device="cpu")  # fmt: skip
    started = time.perf_counter()
    counts = stream_monitor(config, lines=lines(), err=io.StringIO())
    seconds = time.perf_counter() - started
    log_lines = sum(1 for _ in (root / "log.jsonl").open())
    print(f"streamed {counts['prompts']} prompts in {seconds:.1f} s "
          f"({counts['prompts'] / seconds:.0f} prompts/s), {log_lines} log lines")  # fmt: skip
    first, last = peaks[args.first], peaks[args.prompts]
    print(f"peak RSS after {args.first}: {first:.1f} MB; after {args.prompts}: {last:.1f} MB")
    print(f"growth {last - first:.1f} MB (bar < 100 MB); ratio {last / first:.3f}")


if __name__ == "__main__":
    main()
