"""Profile a ``kami`` process a benchmark starts: ``KAMI_BENCH_PROFILE=DIR``.

With ``KAMI_BENCH_PROFILE=DIR`` set, ``bench.http_load`` and ``bench.pipeline`` start
``kami`` through ``python -m bench.sampler DIR/NAME.txt -- ARGS...``, which runs kami's
CLI under yappi (https://github.com/sumerc/yappi) with its CPU clock, on every thread:
time a thread spends blocked on a lock, a socket or the database is not counted, which
matters in a server whose dozens of threads mostly wait. At exit the file gets the CPU
seconds per thread and the functions that used them (own time and with callees).

yappi is not a dependency of kami: install it where the benchmark's Python finds it, for
example ``pip install --target /tmp/yappi yappi`` and ``PYTHONPATH=/tmp/yappi``. Profiling
slows the process down (about twice), so profiled runs are never the reported figures.
"""

from __future__ import annotations

import atexit
import os
import sys
from pathlib import Path
from typing import Any

TOP = 45


def kami_command(name: str) -> list[str]:
    """How a benchmark starts ``kami``: ``-m kami.cli``, or profiled with
    ``KAMI_BENCH_PROFILE=DIR`` (the profile goes to ``DIR/NAME.txt``)."""
    directory = os.environ.get("KAMI_BENCH_PROFILE")
    if not directory:
        return ["-m", "kami.cli"]
    Path(directory).mkdir(parents=True, exist_ok=True)
    return ["-m", "bench.sampler", str(Path(directory) / f"{name}.txt"), "--"]


def _short(path: str) -> str:
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def write(yappi: Any, out: Path) -> None:
    yappi.stop()
    threads = sorted(yappi.get_thread_stats(), key=lambda t: -t.ttot)
    total = sum(t.ttot for t in threads) or 1.0
    functions = yappi.get_func_stats()
    lines = [
        f"{total:.1f} CPU seconds over {len(threads)} threads",
        "CPU per thread: " + ", ".join(f"{t.name} {t.ttot:.1f} s" for t in threads[:12]),
        "",
        f"own CPU (top {TOP}):",
    ]
    for f in sorted(functions, key=lambda f: -f.tsub)[:TOP]:
        lines.append(f"  {f.tsub / total:6.1%} {f.tsub:7.2f} s {f.ncall:9d}  {_short(f.module)}:{f.name}")
    lines += ["", f"with callees (top {TOP * 2}):"]
    for f in sorted(functions, key=lambda f: -f.ttot)[: TOP * 2]:
        lines.append(f"  {f.ttot / total:6.1%} {f.ttot:7.2f} s {f.ncall:9d}  {_short(f.module)}:{f.name}")
    out.write_text("\n".join(lines) + "\n")


def main() -> None:
    """``python -m bench.sampler OUT -- ARGS...``: kami's CLI with ARGS, profiled."""
    import yappi

    args = sys.argv[1:]
    out = Path(args[0])
    rest = args[args.index("--") + 1 :]
    yappi.set_clock_type("cpu")
    yappi.start(builtins=False, profile_threads=True)
    atexit.register(write, yappi, out)
    from kami.cli import main as kami_main

    sys.exit(kami_main(rest))


if __name__ == "__main__":
    main()
