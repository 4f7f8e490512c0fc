"""The protocol bridge's cost (see Benchmarks/bridge): one gateway, one event loop, one legacy
upstream that echoes ids (echo_upstream.py), and the same tools/call sent two ways, alternating
in each round:

- legacy: a 2025-11-25 client on its session (the sealed Mcp-Session-Id from its initialize),
  forwarded as today;
- bridged: a 2026-07-28 client (Mcp-Method, Mcp-Name, the _meta envelope), served by the bridge
  on the upstream session it holds for the user.

Reports gateway CPU per request (from /proc, both figures from the same rounds) and p50/p99."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import httpx

from bench import UPSTREAM_NGINX, CANNED, EXCHANGED, bench_token, cpu_seconds, median, signing_key, wrk  # noqa: E402
from common import ROOT, Process, free_port, stop_all, write_results  # noqa: E402

POLICY = """
listen: 127.0.0.1:{port}
public_url: http://127.0.0.1:{port}
authorization_servers:
  bench:
    issuer: http://127.0.0.1:{keys}
    jwks_uri: http://127.0.0.1:{keys}/jwks.json
    algorithms: [ES256]
resources:
  - path: /mcp
    authorization_server: bench
    upstream: http://127.0.0.1:{upstream}/mcp
    upstream_protocol: legacy
    methods:
      initialize: []
      notifications/*: []
      tools/call:
        list_issues: [bench:read]
"""

CALL = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "list_issues", "arguments": {"project": "OPS"}}}
MODERN_CALL = {**CALL, "params": {**CALL["params"], "_meta": {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bouncer-bridge-"))
    processes: list[Process] = []
    try:
        (work / "www").mkdir()
        signing = signing_key(work / "www")
        keys, upstream, port = free_port(), free_port(), free_port()
        (work / "keys.conf").write_text(UPSTREAM_NGINX.format(dir=work, port=keys, canned=CANNED, exchanged=EXCHANGED))
        nginx = Process("nginx-keys", ["nginx", "-c", str(work / "keys.conf"), "-p", str(work)], work)
        processes.append(nginx)
        nginx.wait_for(f"http://127.0.0.1:{keys}/jwks.json")
        echo = Process("echo-upstream", [sys.executable, str(ROOT / "Benchmarks" / "echo_upstream.py"), str(upstream)], work)
        processes.append(echo)
        policy = work / "policy.yaml"
        policy.write_text(POLICY.format(port=port, keys=keys, upstream=upstream))
        gateway = Process("gateway", [args.binary, "run", "--config", str(policy), "--threads", "1", "--log-level", "error"], work)
        processes.append(gateway)
        gateway.wait_for(f"http://127.0.0.1:{port}/healthz")
        url = f"http://127.0.0.1:{port}/mcp"
        token = bench_token(signing, f"http://127.0.0.1:{keys}", url)
        base = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        initialize = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
                      "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}}
        opened = httpx.post(url, headers=base, json=initialize)
        opened.raise_for_status()
        legacy = {**base, "Mcp-Session-Id": opened.headers["mcp-session-id"], "MCP-Protocol-Version": "2025-11-25"}
        modern = {**base, "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "list_issues"}
        for headers, body in ((legacy, CALL), (modern, MODERN_CALL)):
            check = httpx.post(url, headers=headers, json=body)
            assert check.status_code == 200 and "printer on fire" in check.text, check.text
        print(f"\nthe protocol bridge: {args.repeat} rounds x {args.seconds}s, wrk -t1 -c{args.connections}, POST tools/call, one event loop, "
              f"an echoing legacy upstream (Python)\n", flush=True)
        runs: dict[str, list] = {"legacy": [], "bridged": []}
        pid = gateway.proc.pid
        for round_ in range(args.repeat):
            for key, headers, body in (("legacy", legacy, CALL), ("bridged", modern, MODERN_CALL)):
                before = cpu_seconds(pid)
                run = wrk(url, None, args.seconds, args.connections, work, headers=headers, body=json.dumps(body))
                run["cpu_us_per_request"] = (cpu_seconds(pid) - before) / max(run["requests"], 1) * 1e6
                runs[key].append(run)
                print(f"  round {round_ + 1}: {key:8} {run['rps']:8.0f} req/s  p50 {run['p50_ms']:6.2f} ms  p99 {run['p99_ms']:6.2f} ms  "
                      f"cpu {run['cpu_us_per_request']:6.1f} µs/request" + (f"  ERRORS {run['errors']}" if run["errors"] else ""), flush=True)
        summary = {key: {field: median([run[field] for run in values]) for field in ("rps", "p50_ms", "p99_ms", "cpu_us_per_request")}
                   for key, values in runs.items()}
        ratio = median([b["cpu_us_per_request"] / a["cpu_us_per_request"] for a, b in zip(runs["legacy"], runs["bridged"])])
        print("\n  median of rounds:")
        for key, figures in summary.items():
            print(f"  {key:8} {figures['rps']:8.0f} req/s  p50 {figures['p50_ms']:6.2f} ms  p99 {figures['p99_ms']:6.2f} ms  "
                  f"gateway cpu {figures['cpu_us_per_request']:6.1f} µs/request")
        print(f"  bridged / legacy gateway CPU per request (paired by round): {ratio:.2f} x")
        write_results("bridge", {"seconds": args.seconds, "repeat": args.repeat, "connections": args.connections, "runs": runs,
                                 "summary": summary, "cpu_ratio": ratio})
    finally:
        stop_all(processes, work)


if __name__ == "__main__":
    main()
