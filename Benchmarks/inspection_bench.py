"""The cost of response inspection (see Benchmarks/inspection): one gateway, one event loop,
two resources in front of the same upstream, one with responses inspected (the default: list
filtering, tool pins, the elicitation and sampling guard) and one with `inspect_responses:
false`, measured alternately in the same run:

- a JSON tools/call response (nginx's canned answer): throughput and CPU per request;
- SSE streams of small events (each a JSON-RPC notification, so every event is parsed, the
  worst case for events): delivery latency p50 and p99.

Targets (issue 14): <= 5% throughput loss on tools/call; <= 0.2 ms added p99 event delivery."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench import (CANNED, EXCHANGED, ROOT, UPSTREAM_NGINX, Process, bench_token, free_port, measure, median,  # noqa: E402
                   paired_ratio, signing_key, sse_streams)

POLICY = """
listen: 127.0.0.1:{port}
public_url: http://127.0.0.1:{port}
authorization_servers:
  bench:
    issuer: http://127.0.0.1:{upstream}
    jwks_uri: http://127.0.0.1:{upstream}/jwks.json
    algorithms: [ES256]
resources:
{resources}
"""

RESOURCE = """  - path: {path}
    authorization_server: bench
    upstream: http://127.0.0.1:{port}/mcp
    inspect_responses: {inspect}
    methods:
      tools/call:
        list_issues: [bench:read]
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--sse-samples", type=int, default=1000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bouncer-inspection-"))
    processes: list[Process] = []
    try:
        (work / "www").mkdir()
        signing = signing_key(work / "www")
        upstream, hub, hub_control, port = free_port(), free_port(), free_port(), free_port()
        (work / "upstream.conf").write_text(UPSTREAM_NGINX.format(dir=work, port=upstream, canned=CANNED, exchanged=EXCHANGED))
        up = Process("nginx-upstream", ["nginx", "-c", str(work / "upstream.conf"), "-p", str(work)], work)
        processes.append(up)
        up.wait_for(f"http://127.0.0.1:{upstream}/jwks.json")
        hub_process = Process("sse-hub", [sys.executable, str(ROOT / "Benchmarks" / "sse_hub.py"), str(hub), str(hub_control)], work)
        processes.append(hub_process)
        hub_process.wait_for(f"http://127.0.0.1:{hub_control}/count")
        resources = "".join(RESOURCE.format(path=path, port=target, inspect=inspect) for path, target, inspect in (
            ("/inspected/mcp", upstream, "true"), ("/raw/mcp", upstream, "false"),
            ("/sse/mcp", hub, "true"), ("/sse-raw/mcp", hub, "false"),
        ))
        policy = work / "policy.yaml"
        policy.write_text(POLICY.format(port=port, upstream=upstream, resources=resources))
        gateway = Process("gateway", [args.binary, "run", "--config", str(policy), "--threads", "1", "--log-level", "error"], work)
        processes.append(gateway)
        gateway.wait_for(f"http://127.0.0.1:{port}/healthz")

        def token(path: str) -> str:
            return bench_token(signing, f"http://127.0.0.1:{upstream}", f"http://127.0.0.1:{port}{path}")

        print(f"\nresponse inspection: {args.repeat} rounds x {args.seconds}s, wrk -t1 -c{args.connections}, POST tools/call (JSON response), "
              f"one event loop, the two resources alternating\n", flush=True)
        pid = gateway.proc.pid
        results = measure([
            ("inspected", "tools/call, responses inspected", f"http://127.0.0.1:{port}/inspected/mcp", token("/inspected/mcp"), pid, args.connections),
            ("raw", "tools/call, inspect_responses: false", f"http://127.0.0.1:{port}/raw/mcp", token("/raw/mcp"), pid, args.connections),
        ], args, work)
        throughput = paired_ratio(results["inspected"], results["raw"])
        cpu = {key: results[key]["cpu_seconds"] / max(results[key]["rps"] * args.seconds, 1) * 1e6 for key in ("inspected", "raw")}
        # CPU per request, paired by round: on one saturated event loop throughput is its
        # inverse, and it moves far less with the host than req/s does.
        def per_request(result: dict) -> list[float]:
            return [cpu_s / max(rps * args.seconds, 1) for cpu_s, rps in zip(result["all_cpu"], result["all"])]
        cpu_ratio = median([a / b for a, b in zip(per_request(results["inspected"]), per_request(results["raw"]))])
        print(f"\n  throughput inspected / raw {throughput:.3f} x; gateway CPU per request {cpu['inspected']:.1f} µs inspected, {cpu['raw']:.1f} µs raw, "
              f"inspected / raw (paired) {cpu_ratio:.3f} x", flush=True)

        sse: dict[str, list[dict]] = {"inspected": [], "raw": []}
        for round_ in range(args.repeat):
            for key, path in (("inspected", "/sse/mcp"), ("raw", "/sse-raw/mcp")):
                settle = time.monotonic() + 30
                while httpx.get(f"http://127.0.0.1:{hub_control}/count").text != "0" and time.monotonic() < settle:
                    time.sleep(0.1)
                run = sse_streams(port, path, token(path), hub_control, args.streams, args.sse_samples, pid)
                sse[key].append(run)
                print(f"  round {round_ + 1}: SSE {key:9} {run['streams']} streams, {run['events']} events: "
                      f"p50 {run['p50_ms']:.3f} ms, p99 {run['p99_ms']:.3f} ms", flush=True)
        p50 = {key: median([run["p50_ms"] for run in runs]) for key, runs in sse.items()}
        p99 = {key: median([run["p99_ms"] for run in runs]) for key, runs in sse.items()}
        # Paired per round, like the throughput: what inspection added in the same round.
        added_p99 = median([a["p99_ms"] - b["p99_ms"] for a, b in zip(sse["inspected"], sse["raw"])])
        added_p50 = median([a["p50_ms"] - b["p50_ms"] for a, b in zip(sse["inspected"], sse["raw"])])
        print(f"\n  SSE event delivery (median of rounds): inspected p50 {p50['inspected']:.3f} / p99 {p99['inspected']:.3f} ms, "
              f"raw p50 {p50['raw']:.3f} / p99 {p99['raw']:.3f} ms; added (paired) p50 {added_p50 * 1000:.0f} µs, p99 {added_p99 * 1000:.0f} µs")
        events = sum(run["events"] for runs in sse.values() for run in runs)
        expected = 2 * args.repeat * args.sse_samples
        checks = [
            ("tools/call throughput inspected >= 0.95 x raw", throughput, throughput >= 0.95),
            ("tools/call CPU per request inspected <= 1.05 x raw", cpu_ratio, cpu_ratio <= 1.05),
            ("SSE added p99 event delivery <= 0.2 ms", added_p99, added_p99 <= 0.2 and events == expected),
        ]
        print("\ntargets:")
        for name, value, passed in checks:
            print(f"  {'PASS' if passed else 'FAIL'}  {name:48} ({value:.3f})")
        if events != expected:
            print(f"  (events delivered: {events} of {expected})")
        write_results("inspection", {
            "seconds": args.seconds, "repeat": args.repeat, "results": results, "sse": sse,
            "throughput_ratio": throughput, "cpu_us_per_request": cpu, "cpu_ratio": cpu_ratio, "sse_added_p50_ms": added_p50, "sse_added_p99_ms": added_p99,
            "checks": [{"name": n, "value": v, "passed": p} for n, v, p in checks],
        })
    finally:
        stop_all(processes, work)


if __name__ == "__main__":
    main()
