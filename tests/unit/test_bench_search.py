"""The search benchmark (bench/search.py), run at a tiny size so that it cannot
rot between the times someone runs it at full size. Nothing is timed here."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench import search as search_bench


def test_the_search_benchmark_runs_for_one_owner_and_for_many(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    found = search_bench.run(tmp_path, messages=600, rounds=3, owners=[1, 3])
    printed = capsys.readouterr().out
    assert printed.count("all queries") == 2
    for kind in ("rare word", "common word", "word + person", "trivial query (ceiling)"):
        assert printed.count(kind) == 2, kind
    # The queries found alice's messages (and only hers: measure() checks each hit).
    assert found[1] > 0
    assert found[3] > 0
    assert sorted(p.name for p in tmp_path.glob("*.sqlite3")) == [
        "search-600-1owners.sqlite3",
        "search-600-3owners.sqlite3",
    ]
