"""The run process's start-up heap, kept out of the garbage collector's way.

A process that runs a runbook has imported Prefect, SQLAlchemy, pydantic and the catalog:
about 330 000 objects that live as long as the process. Every full (generation 2) collection
walks all of them, about 0.2 s on our machines, and a run's own allocations trigger one every
few dozen steps. `gc.freeze()` moves the objects that exist now into a permanent generation the
collector skips, so a full collection only walks what the run made (bench/engine_overhead.py
measures the effect). Done once per process.
"""

from __future__ import annotations

import gc

_frozen = False


def freeze_startup_heap(*, collect_first: bool = False) -> None:
    """Freeze the heap once per process. `collect_first` (for a process that is idle, such as
    a warm run process waiting for its run) frees start-up garbage before freezing it."""
    global _frozen
    if _frozen:
        return
    if collect_first:
        gc.collect()
    gc.freeze()
    _frozen = True
