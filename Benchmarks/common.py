"""What the benchmark scripts share: the interop stack's process helpers (Tests/Interop), where
results are written, and the teardown. Loopback only, like everything the benchmarks start."""

from __future__ import annotations

import datetime
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "Tests" / "Interop"))
from interop_stack import Process, free_port  # noqa: E402,F401  (re-exported for the scripts)


def write_results(kind: str, data: dict) -> Path:
    """Writes Benchmarks/results/KIND-<UTC time>.json with the commit measured, and says where."""
    out_dir = ROOT / "Benchmarks" / "results"
    out_dir.mkdir(exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    path = out_dir / f"{kind}-{datetime.datetime.now(datetime.timezone.utc).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps({"commit": commit, **data}, indent=2))
    print(f"\nwritten: {path}")
    return path


def stop_all(processes: list[Process], work: Path) -> None:
    """Stops what a benchmark started, newest first, and removes its scratch directory."""
    for process in reversed(processes):
        process.stop()
    shutil.rmtree(work, ignore_errors=True)
