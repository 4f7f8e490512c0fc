"""Runs the A/B comparison (see Benchmarks/ab): gateway binaries alternating on one upstream,
compared by the gateway's CPU time per proxied request. Everything on 127.0.0.1."""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
from pathlib import Path

from bench import EXCHANGED, CANNED, POLICY, UPSTREAM_NGINX, bench_token, cpu_seconds, event_loop_cpu_seconds, signing_key, wrk  # noqa: E402  (the same directory)
from common import Process, free_port, stop_all, write_results  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("binaries", nargs="+", help="mcp-bouncer binaries to compare, the first one the baseline; BINARY+audit runs that binary "
                                                    "with the default audit configuration (a file, arguments hashed, signed checkpoints); "
                                                    "BINARY+audit:fsync=never,arguments=none changes audit keys")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--resource", default="static", choices=["static", "exchange"], help="full enforcement with a static credential, or token exchange (warm)")
    parser.add_argument("--mallocs", action="store_true", help="after the CPU rounds, count each binary's malloc calls per request "
                        "(perf uprobe on libc's malloc, root; a separate run, since the probe slows the gateway)")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="after the rounds, record each binary's CPU profile under the same load "
                        "(perf record, root) and print its N hottest functions, self time")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bouncer-ab-"))
    processes: list[Process] = []
    try:
        (work / "www").mkdir()
        signing = signing_key(work / "www")
        upstream, hub = free_port(), free_port()
        (work / "upstream.conf").write_text(UPSTREAM_NGINX.format(dir=work, port=upstream, canned=CANNED, exchanged=EXCHANGED))
        up = Process("nginx-upstream", ["nginx", "-c", str(work / "upstream.conf"), "-p", str(work)], work)
        processes.append(up)
        up.wait_for(f"http://127.0.0.1:{upstream}/jwks.json")

        gateways = []
        for index, spec in enumerate(args.binaries):
            binary, _, options = spec.partition("+audit")
            audited = "+audit" in spec
            port = free_port()
            audit = ""
            if audited:
                key = work / f"audit-{index}.key"
                subprocess.run([binary, "audit", "keygen", "--out", str(key)], check=True, capture_output=True)
                audit = f"audit:\n  file: {work / f'audit-{index}.jsonl'}\n  signing_key: {key}\n  arguments: hash"
                # BINARY+audit:KEY=VALUE,... sets further audit keys (e.g. +audit:fsync=never).
                for option in filter(None, options.lstrip(":").split(",")):
                    name, _, value = option.partition("=")
                    audit += f"\n  {name}: {value}"
            (work / f"gateway-{index}.yaml").write_text(POLICY.format(port=port, scheme="http", tls="", audit=audit, upstream=upstream, hub=hub))
            process = Process(f"gateway-{index}", [binary, "run", "--config", str(work / f"gateway-{index}.yaml"), "--threads", "1", "--log-level", "error"], work)
            processes.append(process)
            process.wait_for(f"http://127.0.0.1:{port}/healthz")
            path = f"/{args.resource}/mcp"
            token = bench_token(signing, f"http://127.0.0.1:{upstream}", f"http://127.0.0.1:{port}{path}")
            gateways.append((spec, process, f"http://127.0.0.1:{port}{path}", token))

        print(f"\nA/B: {args.rounds} rounds x {args.seconds}s, the binaries alternating within a round; 1 event loop each, wrk -t1 -c{args.connections}, "
              f"POST tools/call to /{args.resource}/mcp\n", flush=True)
        runs: list[list[dict]] = [[] for _ in gateways]
        for round_index in range(args.rounds):
            cells = []
            for index, (_, process, url, token) in enumerate(gateways):
                wrk(url, token, 1, args.connections, work)  # warm: token cache, upstream pool, exchange cache
                before, loops_before = cpu_seconds(process.proc.pid), event_loop_cpu_seconds(process.proc.pid)
                run = wrk(url, token, args.seconds, args.connections, work)
                requests = run["rps"] * args.seconds
                run["cpu_us_per_request"] = (cpu_seconds(process.proc.pid) - before) * 1e6 / requests if requests else float("nan")
                # What other threads (the audit writer) spend, apart from the event loop.
                loops = (event_loop_cpu_seconds(process.proc.pid) - loops_before) * 1e6 / requests if requests else float("nan")
                run["off_loop_cpu_us_per_request"] = run["cpu_us_per_request"] - loops
                runs[index].append(run)
                cells.append(f"{run['rps']:8.0f} req/s {run['cpu_us_per_request']:6.1f} µs")
            print(f"  round {round_index + 1}: " + "   ".join(cells), flush=True)

        mallocs = [malloc_round(process.proc.pid, url, token, args, work) for (_, process, url, token) in gateways] if args.mallocs else []
        profiles = [profile_round(process.proc.pid, url, token, args, work) for (_, process, url, token) in gateways] if args.profile else []

        print()
        summary = []
        for index, (binary, _, _, _) in enumerate(gateways):
            cpu = statistics.median(run["cpu_us_per_request"] for run in runs[index])
            off_loop = statistics.median(run["off_loop_cpu_us_per_request"] for run in runs[index])
            rps = statistics.median(run["rps"] for run in runs[index])
            # Same-round pairs against the baseline, so a slow spell of the host hits both sides.
            ratio = statistics.median(run["cpu_us_per_request"] / base["cpu_us_per_request"] for run, base in zip(runs[index], runs[0]))
            summary.append({"binary": binary, "median_rps": rps, "median_cpu_us_per_request": cpu, "median_off_loop_cpu_us_per_request": off_loop,
                            "cpu_vs_baseline": ratio, "runs": runs[index], "mallocs_per_request": mallocs[index] if mallocs else None,
                            "profile": profiles[index] if profiles else None})
            print(f"  {binary}\n      median {rps:8.0f} req/s, {cpu:6.1f} µs CPU per request ({off_loop:.1f} off the event loop)" + ("" if index == 0 else f", {ratio:.2f} x the baseline's CPU (median of same-round pairs)")
                  + (f"\n      {mallocs[index]:.1f} malloc calls per request (all threads)" if mallocs else ""))
        for (binary, _, _, _), profile in zip(gateways, profiles):
            print(f"\n  {binary}: the {args.profile} hottest functions (self time, share of the gateway's samples)")
            for share, symbol in profile:
                print(f"      {share:5.1f} %  {symbol}")
        write_results("ab", {"rounds": args.rounds, "seconds": args.seconds, "connections": args.connections, "resource": args.resource, "gateways": summary})
    finally:
        stop_all(processes, work)


def malloc_round(pid: int, url: str, token: str, args: argparse.Namespace, work: Path) -> float:
    """malloc calls per request of the gateway `pid` under the same load: a uprobe on the libc the
    gateway maps, counted by `perf stat` while wrk runs."""
    libc = next(line.split()[-1] for line in Path(f"/proc/{pid}/maps").read_text().splitlines() if "/libc.so" in line)
    probes = subprocess.run(["perf", "probe", "-l"], capture_output=True, text=True).stdout
    if "probe_libc:malloc" not in probes:
        subprocess.run(["perf", "probe", "-q", "-x", libc, "malloc"], check=True, capture_output=True)
    wrk(url, token, 1, args.connections, work)
    counts = work / f"mallocs-{pid}.csv"
    perf = subprocess.Popen(["perf", "stat", "-x", ",", "-e", "probe_libc:malloc", "-p", str(pid), "-o", str(counts)])
    try:
        run = wrk(url, token, args.seconds, args.connections, work)
    finally:
        perf.send_signal(2)
        perf.wait(timeout=30)
    count = next(int(line.split(",")[0]) for line in counts.read_text().splitlines() if "probe_libc:malloc" in line)
    requests = run["rps"] * args.seconds
    return count / requests if requests else float("nan")


def profile_round(pid: int, url: str, token: str, args: argparse.Namespace, work: Path) -> list[tuple[float, str]]:
    """The gateway `pid`'s hottest functions under the same load: `perf record` while wrk runs,
    then `perf report` by symbol, self time (demangled by perf where it can)."""
    wrk(url, token, 1, args.connections, work)
    data = work / f"perf-{pid}.data"
    perf = subprocess.Popen(["perf", "record", "-q", "-F", "2999", "-p", str(pid), "-o", str(data)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wrk(url, token, args.seconds, args.connections, work)
    finally:
        perf.send_signal(2)
        perf.wait(timeout=60)
    report = subprocess.run(["perf", "report", "-i", str(data), "--no-children", "--sort", "symbol", "--stdio", "-q", "--percent-limit", "0.3"],
                            capture_output=True, text=True).stdout
    rows = []
    for line in report.splitlines():
        parts = line.strip().split(None, 2)
        if len(parts) == 3 and parts[0].endswith("%"):
            rows.append((float(parts[0].rstrip("%")), parts[2].removeprefix("[.] ").removeprefix("[k] ")[:140]))
    return rows[: args.profile]


if __name__ == "__main__":
    main()
