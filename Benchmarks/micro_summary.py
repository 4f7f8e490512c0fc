"""Summarises an ordo-one/benchmark markdown report (Benchmarks/micro): p50 wall time and
mallocs per operation for each benchmark, and the warm path's allocation bound."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

# The warm path (cached token, from the request's bytes to the upstream head written) must
# allocate at most this many times per request (issue 28; 16 before it).
WARM_PATH_MALLOC_LIMIT = 4
UNITS_NS = {"ns": 1, "μs": 1_000, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
SCALE = {"": 1, "K": 1_000, "M": 1_000_000, "G": 1_000_000_000}


def parse(report: str) -> dict[str, dict[str, float]]:
    """Benchmark name -> {"wall_ns", "mallocs"} at p50, per operation. Rows marked "*" (or
    carrying the scaling factor) are already per operation."""
    results: dict[str, dict[str, float]] = {}
    name = None
    for line in report.splitlines():
        if line.startswith("### "):
            name = line[4:].strip()
            results[name] = {}
            continue
        if name is None or not line.startswith("|"):
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) < 4 or not re.match(r"^-?\d+$", cells[3]):
            continue
        metric, p50 = cells[0], float(cells[3])
        unit = re.search(r"\((ns|μs|us|ms|s)\)", metric)
        scale = re.search(r"\((K|M|G)\)", metric)
        factor = SCALE[scale.group(1)] if scale else 1
        if metric.startswith("Time (wall clock)") and unit:
            results[name]["wall_ns"] = p50 * UNITS_NS[unit.group(1)] * factor
        elif metric.startswith("Malloc (total)"):
            results[name]["mallocs"] = p50 * factor
    return results


def main() -> int:
    path = Path(sys.argv[1])
    results = parse(path.read_text())
    if not results:
        print(f"no benchmark results in {path}", file=sys.stderr)
        return 1
    print("\nper operation, p50:")
    print(f"  {'benchmark':76} {'wall':>10} {'mallocs':>8}")
    for name, figures in results.items():
        wall = figures.get("wall_ns")
        wall_text = f"{wall / 1000:8.2f} µs" if wall is not None else "-"
        print(f"  {name:76} {wall_text:>10} {figures.get('mallocs', float('nan')):8.0f}")
    warm = next((figures for name, figures in results.items() if name.startswith("Warm path")), None)
    verdict = warm is not None and warm.get("mallocs", 1e9) <= WARM_PATH_MALLOC_LIMIT
    print(f"\n  warm path allocations per request <= {WARM_PATH_MALLOC_LIMIT}: {'PASS' if verdict else 'FAIL'}")
    path.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"  JSON: {path.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
