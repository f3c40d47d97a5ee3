"""The benchmark scripts still run against the product: each, at its tiny `--quick` sizes, prints its figures.

The scripts run at once, each in its own process: they spend most of their time starting interpreters and
warehouses, so running them one after another would take several times as long. Nothing here times anything.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"

# What each script prints whatever its figures are: headings and the start of each target line.
# Not here: peer_dlt.py. It needs the `bench` extra (dlt), which only `make bench` installs, so here it could
# only run where a developer happened to run `make bench` first, and be skipped everywhere else, CI included;
# `make bench` runs it at full size, and its side of the product makes the same calls as sync_noop.py's.
EXPECTED = {
    "sync_full.py": [
        "sync rows/s",
        "sync time <= 1.5x (a) at 3,000 rows: ",
        "sync >= 8x faster than (b) at 3,000 rows: ",
    ],
    "sync_first_keyed.py": [
        "vs full refresh",
        "deduped: peak RSS at 3,000 <= 1.3x at 2,000: ",
        "append, key: peak RSS <= 1.5x the full refresh at 3,000: ",
        "append, no key: rows/s not below old at 3,000: ",
    ],
    "sync_noop.py": [
        "a sync that finds nothing new",
        "wall(4,000) / wall(2,000) <= 1.2: ",
        "statements issued by the sync <= 2: ",
        "commits nothing: ",
    ],
    "hourly_year.py": [
        "a year of hourly partitions: 48 windows",
        "first sync <= 15 s: ",
        "statements and SQL size do not grow with the partitions",
    ],
    "sync_backfill.py": [
        "7-partition single-run backfill",
        "backfill <= 1.3x the unpartitioned pull (full_refresh): ",
    ],
    "change_feed.py": [
        "change-feed run: ",
        "change-feed sync of 1% recent corrections >= 20x faster than a full re-read: ",
    ],
    "sensor_tick.py": ["sensor tick over 20 streams", "nothing changed: median", "one table changed: "],
    "delivery.py": [
        "Delivering 20,000 events in batches of 500",
        "delivery >= 0.8x the bare client's events/s: ",
        "requests/s within the bound of 40: ",
    ],
    "definitions_load.py": ["validate_loadable s", "load with 20 streams <= 5 s: ", "zero network calls: "],
}


def test_each_benchmark_runs_quick_and_prints_its_figures(tmp_path: Path) -> None:
    running = {
        script: subprocess.Popen(
            [sys.executable, str(BENCHMARKS / script), "--quick"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        for script in EXPECTED
    }
    failures = []
    for script, process in running.items():
        out, err = process.communicate(timeout=300)
        if process.returncode != 0:
            failures.append(f"{script} exited {process.returncode}:\n{err[-3000:]}")
            continue
        missing = [line for line in EXPECTED[script] if line not in out]
        if missing:
            failures.append(f"{script} did not print {missing}:\n{out}")
    assert not failures, "\n\n".join(failures)
