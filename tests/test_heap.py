"""The run process's start-up heap is frozen once (flows/heap.py)."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap


def test_the_start_up_heap_is_frozen_once_and_later_objects_stay_collectable():
    # In a process of its own: freezing is for the rest of a process's life.
    script = textwrap.dedent(
        """
        import gc
        from flows.heap import freeze_startup_heap
        assert gc.get_freeze_count() == 0
        freeze_startup_heap(collect_first=True)
        frozen = gc.get_freeze_count()
        assert frozen > 1000, frozen
        later = [[] for _ in range(5000)]
        freeze_startup_heap()  # a second run in the same process freezes nothing more
        assert gc.get_freeze_count() == frozen
        assert any(o is later for o in gc.get_objects())  # still the collector's
        print("ok", frozen)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok ")
    assert gc.isenabled()
