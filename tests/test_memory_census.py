"""The memory census names what a process kept since its last line."""

from __future__ import annotations

import pytest

from rtcfleet import memory_census


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
    before = memory_census.c_heap()
    held = bytearray(32 * 2**20)
    during = memory_census.c_heap()
    assert before is not None and during is not None
    assert during["in_use"] - before["in_use"] >= len(held)
    del held
    after = memory_census.c_heap()
    assert after is not None and after["in_use"] < during["in_use"] - 16 * 2**20
