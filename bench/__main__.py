"""``python -m bench [NAME...]``: run benchmarks, merge their sections into bench/results.json.

A benchmark is a module ``bench/<name>.py`` listed in ``BENCHMARKS``. It provides
``SECTIONS`` (the result keys it writes), ``run(database_url) -> {section: figures}``
and ``table(sections) -> str``. Each runs in a fresh database on the server, dropped
afterwards. Sections of benchmarks not run this time are kept as they were.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import traceback
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, cast

from bench.database import fresh_database, server_url

RESULTS = Path(__file__).with_name("results.json")

# name -> module; add a line here for each new benchmark.
BENCHMARKS: dict[str, str] = {
    "orders": "bench.orders",
    "hot_product": "bench.hot_product",
    "stock": "bench.stock",
    "verify": "bench.verify",
    "pipeline": "bench.pipeline",
    "rebuild": "bench.rebuild",
    "http": "bench.http_load",
}


class Benchmark(Protocol):
    SECTIONS: tuple[str, ...]

    def run(self, database_url: str) -> dict[str, dict[str, Any]]: ...

    def table(self, sections: dict[str, dict[str, Any]]) -> str: ...


def load(name: str) -> Benchmark:
    module: ModuleType = importlib.import_module(BENCHMARKS[name])
    return cast(Benchmark, module)


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }


def commit() -> str | None:
    """The commit measured, with ``-dirty`` when the working tree differs from it."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--exclude", "*"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def merge(path: Path, sections: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Write these sections into the results file, keeping every other section."""
    results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    results.update(sections)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    temporary.replace(path)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"of {', '.join(BENCHMARKS)}")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the JSON file to merge into")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    names: list[str] = args.names or list(BENCHMARKS)

    server = server_url()
    tables: list[str] = []
    failed: list[str] = []
    for name in names:
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        try:
            benchmark = load(name)
            with fresh_database(server, name) as database_url:
                sections = benchmark.run(database_url)
        except Exception:
            # One broken benchmark must not cost the others their figures.
            traceback.print_exc()
            failed.append(name)
            continue
        stamp = {
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "commit": commit(),
            "machine": machine(),
            # The machine is shared: how busy it was (1, 5, 15 minutes) when this ended.
            "load_average": [round(x, 2) for x in os.getloadavg()],
        }
        for figures in sections.values():
            figures.update(stamp)
        merge(args.results, sections)
        tables.append(benchmark.table(sections))

    if tables:
        print("\n\n".join(tables))
        print()
    results = json.loads(args.results.read_text()) if args.results.exists() else {}
    print(json.dumps(results, indent=2, ensure_ascii=False))
    if failed:
        print(f"bench: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
