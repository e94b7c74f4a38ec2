"""Helpers shared by the benchmark scripts (run them as `python benchmarks/NAME.py`)."""

from __future__ import annotations

import platform
import resource


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def machine(threads: int) -> str:
    """One line naming the CPU and the threads used, for the results."""
    import os

    return f"{cpu_name()}, {os.cpu_count()} cores, {threads} torch threads"


def cpu_times() -> list[int] | None:
    """The machine's CPU time counters from /proc/stat (user, nice, system, idle, iowait, irq, softirq, steal)."""
    try:
        with open("/proc/stat") as f:
            return [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None


def steal_percent(before: list[int] | None, after: list[int] | None) -> float | None:
    """Share of CPU time between two :func:`cpu_times` that the hypervisor gave to other machines.

    On this virtual machine it ranged from 4 to 40 % within a minute, and timings
    swing with it: results taken under heavy steal are not comparable.
    """
    if not before or not after:
        return None
    delta = [b - a for a, b in zip(before, after)]
    return round(100 * delta[7] / max(1, sum(delta)), 1)


def peak_memory_mb() -> int:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
