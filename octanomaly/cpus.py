"""How many CPUs this process may run on: the one count every thread pool is sized by."""

from __future__ import annotations

import os


def available_cpus() -> int:
    """CPUs this process may use: its affinity set (``taskset``, a cgroup cpuset, a scheduler's
    allocation), not every CPU of the host; at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity API (macOS, Windows)
        return max(1, os.cpu_count() or 1)
