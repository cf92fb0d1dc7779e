"""The memory census names what a process kept since its last line."""

from __future__ import annotations

import psutil
import pytest

from rtcfleet import c_heap, memory_census


class Kept:
    """Something a process keeps: its instances are what the census must count."""


def test_a_census_counts_what_grew_and_the_sizes_it_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kept: list[Kept] = []
    census = memory_census.Census("test", lambda: {"kept": len(kept)})
    census.take()
    kept.extend(Kept() for _ in range(5000))
    line = census.take()
    assert line["sizes"] == {"kept": 5000}
    assert line["grew"]["Kept"] == [5000, 5000]
    # kept, not grown: the next line does not name it as growing
    assert census.take()["grew"].get("Kept", [0, 5000])[0] == 0

    monkeypatch.setenv(memory_census.ENV, "30")
    assert memory_census.interval() == 30.0
    for off in ("", "0", "never"):
        monkeypatch.setenv(memory_census.ENV, off)
        assert memory_census.interval() is None


def test_the_c_heap_figures_see_memory_python_hands_to_malloc() -> None:
    """Debian's glibc (the images' and CI's) has ``mallinfo2``."""
    before = c_heap.usage()
    held = bytearray(32 * 2**20)
    during = c_heap.usage()
    assert before is not None and during is not None
    assert during["in_use"] - before["in_use"] >= len(held)
    del held
    after = c_heap.usage()
    assert after is not None and after["in_use"] < during["in_use"] - 16 * 2**20


def test_a_trim_gives_back_the_free_pages_the_allocator_kept() -> None:
    """Freed small blocks stay with glibc's allocator (below its mmap threshold); the trim
    returns their pages."""
    held = [bytearray(64 * 1024) for _ in range(800)]  # 50 MiB in blocks below the threshold
    keep = held[::50]  # a few survivors pin the top of the heap, as long-lived objects do
    del held
    before = c_heap.usage()
    resident_before = psutil.Process().memory_info().rss
    assert before is not None and before["free_kept"] > 40 * 2**20
    assert c_heap.trim()
    assert psutil.Process().memory_info().rss < resident_before - 30 * 2**20
    assert keep
