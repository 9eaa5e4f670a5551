"""`python -m bench [NAME [ARGS...]]`: run one benchmark, or every one with no NAME.

A benchmark is any module bench/<name>.py with `main(argv: list[str]) -> int`.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

BENCHMARKS = sorted(p.stem for p in Path(__file__).parent.glob("[!_]*.py"))


def main(argv: list[str]) -> int:
    if argv and not argv[0].startswith("-"):
        names, rest = [argv[0]], argv[1:]
    else:
        names, rest = BENCHMARKS, argv
    if names[0] not in BENCHMARKS:
        print(f"unknown benchmark {names[0]!r}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    status = 0
    for name in names:
        status |= int(importlib.import_module(f"bench.{name}").main(rest))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
