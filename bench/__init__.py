"""Benchmarks (not tests): `python -m bench NAME`. Results are written up in docs/benchmarks.md."""

import os
from pathlib import Path


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system, every thread) used so far by process ``pid``; 0 once it
    is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
