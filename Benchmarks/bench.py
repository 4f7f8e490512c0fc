"""The benchmark suite (see Benchmarks/run): mcp-bouncer against direct and nginx, in one run,
on loopback, with PASS/FAIL against the targets. Prints a table; writes JSON to
Benchmarks/results/. Every load is bounded in time and stays on 127.0.0.1."""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import resource
import selectors
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from common import ROOT, Process, free_port, stop_all, write_results  # noqa: E402  (the same directory)

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CANNED = '{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"OPS-1: printer on fire"}]}}'
EXCHANGED = '{"access_token":"upstream-token","token_type":"Bearer","expires_in":3600,"issued_token_type":"urn:ietf:params:oauth:token-type:access_token"}'
BODY = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "list_issues", "arguments": {"project": "OPS"}}})

UPSTREAM_NGINX = """
daemon off; master_process off; worker_processes 1;
error_log {dir}/upstream-error.log warn; pid {dir}/upstream.pid;
events {{ worker_connections 16384; }}
http {{
    access_log off; keepalive_requests 1000000;
    client_body_temp_path {dir}/u-body; proxy_temp_path {dir}/u-proxy; fastcgi_temp_path {dir}/u-fcgi; uwsgi_temp_path {dir}/u-uwsgi; scgi_temp_path {dir}/u-scgi;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {dir}/www;
        location = /jwks.json {{ default_type application/json; }}
        location = /mcp {{ default_type application/json; return 200 '{canned}'; }}
        location = /token {{ default_type application/json; return 200 '{exchanged}'; }}
    }}
}}
"""

PROXY_NGINX = """
daemon off; master_process {master}; worker_processes {workers};
error_log {dir}/proxy-error.log warn; pid {dir}/proxy.pid;
events {{ worker_connections 16384; }}
http {{
    access_log off; keepalive_requests 1000000;
    client_body_temp_path {dir}/p-body; proxy_temp_path {dir}/p-proxy; fastcgi_temp_path {dir}/p-fcgi; uwsgi_temp_path {dir}/p-uwsgi; scgi_temp_path {dir}/p-scgi;
    upstream mcp {{ server 127.0.0.1:{upstream}; keepalive 128; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096 {reuseport};
        location / {{ proxy_pass http://mcp; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; }}
    }}
    server {{
        listen 127.0.0.1:{tls_port} ssl backlog=4096 {reuseport};
        ssl_certificate {cert}; ssl_certificate_key {key}; ssl_protocols TLSv1.2 TLSv1.3;
        location / {{ proxy_pass http://mcp; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; }}
    }}
}}
"""

POLICY = """
listen: 127.0.0.1:{port}
public_url: {scheme}://127.0.0.1:{port}
{tls}
{audit}
limits:
  max_header_bytes: 16384
authorization_servers:
  bench:
    issuer: http://127.0.0.1:{upstream}
    jwks_uri: http://127.0.0.1:{upstream}/jwks.json
    token_endpoint: http://127.0.0.1:{upstream}/token
    algorithms: [ES256]
    client: {{ id: bench-gateway, secret: bench-secret }}
resources:
  - path: /static/mcp
    authorization_server: bench
    upstream: http://127.0.0.1:{upstream}/mcp
    upstream_credentials:
      static: {{ header: X-Api-Key, value: bench-upstream-key }}
    methods:
      tools/call:
        list_issues: [bench:read]
        delete_issue: [bench:admin]
  - path: /exchange/mcp
    authorization_server: bench
    upstream: http://127.0.0.1:{upstream}/mcp
    upstream_credentials:
      token_exchange: {{ audience: bench-upstream, scope: bench:read }}
    methods:
      tools/call:
        list_issues: [bench:read]
  - path: /sse/mcp
    authorization_server: bench
    upstream: http://127.0.0.1:{hub}/mcp
    methods:
      tools/call:
        list_issues: [bench:read]
"""


def b64(number: int) -> str:
    return base64.urlsafe_b64encode(number.to_bytes(32, "big")).rstrip(b"=").decode()


def signing_key(www: Path) -> ec.EllipticCurvePrivateKey:
    """A fresh ES256 key; its JWKS (kid "bench") is written to `www`/jwks.json for nginx to serve.
    Shared with tls_bench.py and ab.py."""
    signing = ec.generate_private_key(ec.SECP256R1())
    numbers = signing.public_key().public_numbers()
    (www / "jwks.json").write_text(json.dumps({"keys": [{"kty": "EC", "crv": "P-256", "kid": "bench", "x": b64(numbers.x), "y": b64(numbers.y)}]}))
    return signing


def bench_token(signing: ec.EllipticCurvePrivateKey, issuer: str, audience: str) -> str:
    """An hour-long access token with scope bench:read for `audience`."""
    now = int(time.time())
    return jwt.encode({"iss": issuer, "sub": "bench", "aud": audience, "exp": now + 3600, "iat": now, "scope": "bench:read"},
                      signing, algorithm="ES256", headers={"kid": "bench"})


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and its live children (nginx's workers under its master): a
    process's own stat counts only children it has waited for."""
    total = cpu_seconds(pid)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


def event_loop_cpu_seconds(pid: int) -> float:
    """CPU time of the process's SwiftNIO event loop threads (the rest: the audit writer,
    the thread pool, the runtime)."""
    total = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            comm, fields = (task / "stat").read_text().rsplit(")", 1)
        except OSError:  # the thread ended meanwhile
            continue
        if comm.split("(", 1)[1].startswith("NIO-ELT"):
            fields = fields.split()
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


def memory_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def wrk(url: str, token: str | None, seconds: int, connections: int, work: Path, headers: dict | None = None, body: str = BODY,
        lua: tuple[str, ...] = (), threads: int = 1) -> dict:
    """One wrk run of `threads` threads POSTing `body` (the tools/call unless given) with
    `headers` (JSON and SSE accepted, the bearer `token` if any, unless given), `lua` added to
    its script (a `request` function, say): req/s, requests, p50/p99/p99.9, errors."""
    if headers is None:
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
    script = work / "load.lua"
    script.write_text("\n".join([
        'wrk.method = "POST"',
        f"wrk.body = {json.dumps(body)}",
        *[f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()],
        *lua,
        "done = function(summary, latency, requests)",
        '  io.write(string.format("LAT %f %f %f\\n", latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))',
        "  local e = summary.errors",
        '  io.write(string.format("ERR %d\\n", e.connect + e.read + e.write + e.status + e.timeout))',
        "end",
    ]) + "\n")
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url],
                         capture_output=True, text=True, timeout=seconds * 4 + 30).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    lat = re.search(r"LAT ([\d.]+) ([\d.]+) ([\d.]+)", out)
    err = re.search(r"ERR (\d+)", out)
    requests = re.search(r"(\d+) requests in", out)
    if not rps or not lat:
        raise RuntimeError(f"cannot parse wrk output:\n{out}")
    return {"rps": float(rps.group(1)), "requests": int(requests.group(1)) if requests else 0, "p50_ms": float(lat.group(1)) / 1000,
            "p99_ms": float(lat.group(2)) / 1000, "p999_ms": float(lat.group(3)) / 1000, "errors": int(err.group(1)) if err else 0}


def median(values: list, key: str | None = None):
    """The middle of several runs: of numbers, or of result dicts by `key`, with `errors`
    summed over all runs and every run's `key` kept in `all`. Shared with tls_bench.py."""
    if key is None:
        return sorted(values)[len(values) // 2]
    middle = dict(sorted(values, key=lambda run: run[key])[len(values) // 2])
    middle["errors"] = sum(run["errors"] for run in values)
    middle["all"] = [run[key] for run in values]
    if all("cpu_seconds" in run for run in values):
        # Every run's process CPU time, in order, for paired CPU-per-request ratios.
        middle["all_cpu"] = [run["cpu_seconds"] for run in values]
    return middle


# One benchmarked path: (key, label, url, bearer token or None, pid or None, connections).
Figure = tuple[str, str, str, "str | None", "int | None", int]


def measure(figures: list[Figure], args, work: Path, wrk_threads: int = 1) -> dict:
    """`args.repeat` rounds of one wrk run (of `wrk_threads` threads) per figure, the figures
    alternating within each round, so that the host speeding up or slowing down during the run
    (it does, by +-20% and for tens of seconds at a time) reaches every figure compared, not
    one of them. Each figure reports its median-throughput run, with every run's req/s kept in
    order in `all` for paired ratios. A figure's CPU is its process's and its children's (an
    nginx master's workers)."""
    runs: dict[str, list] = {key: [] for key, *_ in figures}
    for _ in range(args.repeat):
        for key, _, url, token, pid, connections in figures:
            before = tree_cpu_seconds(pid) if pid else 0.0
            run = wrk(url, token, args.seconds, connections, work, threads=wrk_threads)
            if pid:
                run["cpu_seconds"] = tree_cpu_seconds(pid) - before
                run["peak_rss_mb"] = memory_mb(pid, "VmHWM")
            runs[key].append(run)
    results = {}
    for key, name, _, _, pid, _ in figures:
        result = results[key] = median(runs[key], "rps")
        print(f"  {name:40} {result['rps']:9.0f} req/s  p50 {result['p50_ms']:6.2f}  p99 {result['p99_ms']:6.2f}  p99.9 {result['p999_ms']:6.2f} ms"
              + (f"  cpu {result['cpu_seconds']:5.1f}s  rss {result['peak_rss_mb']:5.0f} MB" if pid else "")
              + (f"  ERRORS {result['errors']}" if result["errors"] else ""), flush=True)
    return results


def paired_ratio(numerator: dict, denominator: dict) -> float:
    """The median over rounds of one figure's req/s over another's from the same round."""
    return median([x / y for x, y in zip(numerator["all"], denominator["all"])])


def sse_streams(port: int, path: str, token: str | None, hub_control: int, count: int, samples: int, pid: int | None) -> dict:
    """Opens `count` SSE streams (through the gateway, or straight to the hub for the
    baseline), then has the hub write `samples` events one at a time, each to one stream, and
    measures how long each took to arrive.

    The client is one thread on epoll over plain non-blocking sockets, so the time it adds
    to a delivery is one wake-up and one recv, not an asyncio task switch; the hub stamps each
    event with CLOCK_MONOTONIC just before writing it."""
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    request = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\n"
               f"Accept: application/json, text/event-stream\r\nContent-Length: {len(BODY)}\r\n\r\n{BODY}").encode()
    selector = selectors.EpollSelector()
    pending: dict[socket.socket, bytes] = {}
    streams: list[socket.socket] = []
    deadline = time.monotonic() + 90
    opened = 0
    for index in range(count):
        conn = socket.create_connection(("127.0.0.1", port))
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.sendall(request)
        conn.setblocking(False)
        streams.append(conn)
        pending[conn] = b""
        selector.register(conn, selectors.EVENT_READ)
        if index % 500 == 499:
            opened += _drain_heads(selector, pending, 0.05)
    while pending and time.monotonic() < deadline:
        opened += _drain_heads(selector, pending, 0.2)
    time.sleep(1)
    rss = memory_mb(pid, "VmRSS") if pid else 0.0

    latencies: list[float] = []
    for index in range(samples):
        control = socket.create_connection(("127.0.0.1", hub_control))
        control.sendall(f"GET /emit?n={index * 37} HTTP/1.1\r\nHost: hub\r\n\r\n".encode())
        arrived = False
        wait_until = time.monotonic() + 2
        while not arrived and time.monotonic() < wait_until:
            for key, _ in selector.select(0.5):
                now = time.monotonic_ns()
                try:
                    data = key.fileobj.recv(65536)
                except BlockingIOError:
                    continue
                for match in re.finditer(rb'"t":(\d+)', data):
                    latencies.append((now - int(match.group(1))) / 1e6)
                    arrived = True
        control.close()
        time.sleep(0.005)
    for conn in streams:
        conn.close()
    selector.close()
    latencies.sort()
    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(len(latencies) * p))] if latencies else float("nan")
    return {"streams": opened, "rss_mb": rss, "events": len(latencies), "p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": latencies[-1] if latencies else float("nan")}


def _drain_heads(selector: selectors.BaseSelector, pending: dict, timeout: float) -> int:
    """Reads response heads of streams still waiting for one; returns how many completed."""
    done = 0
    for key, _ in selector.select(timeout):
        conn = key.fileobj
        if conn not in pending:
            continue
        try:
            chunk = conn.recv(4096)
        except BlockingIOError:
            continue
        if not chunk:
            selector.unregister(conn)
            del pending[conn]
            continue
        pending[conn] += chunk
        if b"\r\n\r\n" in pending[conn]:
            if not pending[conn].startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"SSE stream refused: {pending[conn][:200]!r}")
            del pending[conn]
            done += 1
    return done


def added_latency_check(percentile: str, a: dict, b: dict, c: dict) -> tuple[str, float, bool]:
    """(c)'s added latency over (a) against nginx's. When nginx appears to add nothing or less
    than nothing (a noisy direct run), the ratio means nothing: reported as NaN, not passed."""
    key = f"{percentile}_ms"
    ours, nginx = c[key] - a[key], b[key] - a[key]
    ratio = ours / nginx if nginx > 0 else float("nan")
    return (f"added {percentile} latency (c)-(a) <= 1.2 x ((b)-(a))", ratio, nginx > 0 and ours <= 1.2 * nginx)


def per_request_cpu_us(result: dict, seconds: int) -> float:
    """A measured run's process CPU per request, in µs."""
    return result["cpu_seconds"] * 1e6 / max(result["rps"] * seconds, 1)


def floor_context(results: dict, seconds: int) -> dict:
    """Where the distance to nginx lies (with --floor): CPU per request of each proxy, paired
    throughput ratios of the SwiftNIO byte relay and the bare SwiftNIO HTTP/1 proxy to nginx
    and of the gateway to the bare proxy, without and with TLS, and the latency each adds at
    one connection. Context for the targets, not targets."""
    names = ("nginx", "SwiftNIO byte relay", "SwiftNIO HTTP/1 proxy", "mcp-bouncer")
    context: dict = {}
    for key, title, figures in (
        ("plain", "32 connections", ("b_nginx", "r_nio_relay", "n_nio_http", "c_gateway")),
        ("tls", "TLS, the SwiftNIO proxies through mcp-bouncer's TLSHandler", ("e_nginx_tls", "r_nio_relay_tls", "n_nio_http_tls", "e_gateway_tls")),
    ):
        nginx, relay, nio_http, gateway = (results[figure] for figure in figures)
        cpu = {name: per_request_cpu_us(results[figure], seconds) for name, figure in zip(names, figures)}
        ratios = {"relay_vs_nginx": paired_ratio(relay, nginx), "nio_http_vs_nginx": paired_ratio(nio_http, nginx), "gateway_vs_nio_http": paired_ratio(gateway, nio_http)}
        print(f"\n  where the distance to nginx lies ({title}): CPU per request " + ", ".join(f"{name} {value:.1f} µs" for name, value in cpu.items()))
        print(f"  throughput: byte relay / nginx {ratios['relay_vs_nginx']:.2f}, SwiftNIO HTTP/1 proxy / nginx {ratios['nio_http_vs_nginx']:.2f}, "
              f"mcp-bouncer / SwiftNIO HTTP/1 proxy {ratios['gateway_vs_nio_http']:.2f}")
        context[key] = {"cpu_us_per_request": cpu, **ratios}
    if "k_codec" in results:
        # Issue 28: a proxy framing with the gateway's own codec, in one handler per side.
        codec_cpu = per_request_cpu_us(results["k_codec"], seconds)
        codec_ratio = paired_ratio(results["k_codec"], results["b_nginx"])
        print(f"  mcp-bouncer's own codec (no auth, bytes relayed as framed): {codec_cpu:.1f} µs CPU per request, throughput / nginx {codec_ratio:.2f}")
        context["codec"] = {"cpu_us_per_request": codec_cpu, "codec_vs_nginx": codec_ratio}
    added = {name: {p: results[f"{figure}_1c"][f"{p}_ms"] - results["a_direct_1c"][f"{p}_ms"] for p in ("p50", "p99")}
             for name, figure in zip(names, ("b_nginx", "r_nio_relay", "n_nio_http", "c_gateway"))}
    print("  latency added at one connection, p50 / p99: "
          + ", ".join(f"{name} {value['p50'] * 1000:.0f} / {value['p99'] * 1000:.0f} µs" for name, value in added.items()))
    context["added_latency_1c_ms"] = added
    return context


# Issue 28's load: wrk -t2 -c64 against nginx with 2 workers and the gateway on its default
# event loops (one per core), audit on and off.
ISSUE_28_CONNECTIONS, ISSUE_28_WRK_THREADS = 64, 2


def issue_28_targets(results: dict, seconds: int) -> list[tuple[str, float, bool]]:
    """Issue 28's targets, each beside what the bare SwiftNIO proxies (no authentication, no
    HTTP rewriting) reach in the same rounds: the budget a target leaves the gateway, and how
    much of it SwiftNIO and the codec use before the gateway does anything."""
    nginx, audited, unaudited = results["b_nginx_2_workers_64c"], results["c_gateway_64c"], results["c_gateway_no_audit_64c"]
    cpu = {name: per_request_cpu_us(results[key], seconds) for name, key in (
        ("nginx", "b_nginx_2_workers_64c"), ("gateway, audit on", "c_gateway_64c"), ("gateway, audit off", "c_gateway_no_audit_64c"),
        ("SwiftNIO byte relay", "r_nio_relay_64c"), ("SwiftNIO on the codec", "k_codec_64c")) if key in results}
    on, off = paired_ratio(audited, nginx), paired_ratio(unaudited, nginx)
    cpu_ratio = cpu["gateway, audit on"] / cpu["nginx"]
    a, b, c = results["a_direct_1c"], results["b_nginx_1c"], results["c_gateway_1c"]
    added = {"nginx": b["p50_ms"] - a["p50_ms"], "gateway": c["p50_ms"] - a["p50_ms"]}
    latency_ratio = added["gateway"] / added["nginx"] if added["nginx"] > 0 else float("nan")

    print(f"\n  issue 28 (wrk -t{ISSUE_28_WRK_THREADS} -c{ISSUE_28_CONNECTIONS}, nginx 2 workers, every proxy on 2 event loops): CPU per request "
          + ", ".join(f"{name} {value:.1f} µs" for name, value in cpu.items()))
    floors = [(name, key) for name, key in (("byte relay", "r_nio_relay_64c"), ("codec", "k_codec_64c")) if key in results]
    if floors:
        print("  throughput / nginx of the bare SwiftNIO proxies: " + ", ".join(f"{name} {paired_ratio(results[key], nginx):.2f}" for name, key in floors))
        budget = 1.3 * cpu["nginx"]
        print(f"  the CPU target's budget (1.3 x nginx's) {budget:.1f} µs per request; SwiftNIO on the codec alone {cpu.get('SwiftNIO on the codec', float('nan')):.1f} µs, "
              f"leaving {budget - cpu.get('SwiftNIO on the codec', float('nan')):.1f} µs for authentication, the JSON-RPC decision, metrics, the log and the audit trail")
    at_one = [(name, results[key]) for name, key in (("nginx", "b_nginx_1c"), ("byte relay", "r_nio_relay_1c"), ("codec", "k_codec_1c"),
                                                     ("gateway", "c_gateway_1c")) if key in results]
    one = {name: (result["p50_ms"] - a["p50_ms"]) * 1000 for name, result in at_one}
    one_cpu = {name: per_request_cpu_us(result, seconds) for name, result in at_one}
    print(f"  one connection: the latency target's budget (1.5 x nginx's) {1.5 * one['nginx']:.0f} µs added; added p50 "
          + ", ".join(f"{name} {value:.0f} µs" for name, value in one.items())
          + "; CPU per request " + ", ".join(f"{name} {value:.1f} µs" for name, value in one_cpu.items()))
    results["issue_28"] = {"cpu_us_per_request": cpu, "added_p50_1c_us": one, "cpu_us_per_request_1c": one_cpu}
    return [
        ("issue 28: audit on >= 0.9 x nginx (2 workers)", on, on >= 0.9),
        ("issue 28: audit off >= 0.95 x nginx (2 workers)", off, off >= 0.95),
        ("issue 28: CPU per request (audit on) <= 1.3 x nginx's", cpu_ratio, cpu_ratio <= 1.3),
        ("issue 28: added p50 at 1 connection <= 1.5 x nginx's", latency_ratio, added["nginx"] > 0 and latency_ratio <= 1.5),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    parser.add_argument("--floor", help="nio-floor binary (Benchmarks/Micro): adds a bare SwiftNIO HTTP/1 proxy and a SwiftNIO byte relay to both load sets, "
                                        "to show how much of the distance to nginx is SwiftNIO's and how much the gateway's")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--streams", type=int, default=5000)
    parser.add_argument("--sse-samples", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5, help="rounds (one wrk run per figure each); the median is reported")
    args = parser.parse_args()
    # Two sockets per stream (baseline, then through the gateway) plus the client's own.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * args.streams + 1024)), hard))
    work = Path(tempfile.mkdtemp(prefix="bouncer-bench-"))
    processes: list[Process] = []
    try:
        (work / "www").mkdir()
        cert, key = str(work / "cert.pem"), str(work / "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", key, "-out", cert], check=True, capture_output=True)
        signing = signing_key(work / "www")

        upstream, proxy, proxy_tls, gateway_port, gateway_two_loops_port, gateway_tls_port = free_port(), free_port(), free_port(), free_port(), free_port(), free_port()
        hub, hub_control = free_port(), free_port()
        (work / "upstream.conf").write_text(UPSTREAM_NGINX.format(dir=work, port=upstream, canned=CANNED, exchanged=EXCHANGED))
        (work / "proxy.conf").write_text(PROXY_NGINX.format(dir=work, port=proxy, tls_port=proxy_tls, upstream=upstream, cert=cert, key=key, workers=1, master="off", reuseport=""))
        up = Process("nginx-upstream", ["nginx", "-c", str(work / "upstream.conf"), "-p", str(work)], work)
        processes.append(up)
        up.wait_for(f"http://127.0.0.1:{upstream}/jwks.json")
        nginx_proxy = Process("nginx-proxy", ["nginx", "-c", str(work / "proxy.conf"), "-p", str(work)], work)
        processes.append(nginx_proxy)
        nginx_proxy.wait_for(f"http://127.0.0.1:{proxy}/jwks.json")
        # The same with two workers (a master process and reuseport, so both get connections):
        # what two cores give a proxy that shares them with wrk and the upstream.
        proxy_two, proxy_two_tls, two_dir = free_port(), free_port(), work / "nginx-2-workers"
        two_dir.mkdir()
        (two_dir / "proxy.conf").write_text(PROXY_NGINX.format(dir=two_dir, port=proxy_two, tls_port=proxy_two_tls, upstream=upstream, cert=cert, key=key,
                                                               workers=2, master="on", reuseport="reuseport"))
        nginx_two = Process("nginx-proxy-2-workers", ["nginx", "-c", str(two_dir / "proxy.conf"), "-p", str(two_dir)], work)
        processes.append(nginx_two)
        nginx_two.wait_for(f"http://127.0.0.1:{proxy_two}/jwks.json")
        hub_process = Process("sse-hub", [sys.executable, str(ROOT / "Benchmarks" / "sse_hub.py"), str(hub), str(hub_control)], work)
        processes.append(hub_process)
        hub_process.wait_for(f"http://127.0.0.1:{hub_control}/count")

        def start_floor(name: str, options: list[str]) -> tuple[Process, str]:
            """A nio-floor proxy to the upstream; returns it and its /mcp URL."""
            port, scheme = free_port(), "https" if "--tls" in options else "http"
            floor = Process(name, [args.floor, "--listen", str(port), "--upstream", str(upstream), *options], work)
            processes.append(floor)
            floor.wait_for(f"{scheme}://127.0.0.1:{port}/jwks.json", verify=False)
            return floor, f"{scheme}://127.0.0.1:{port}/mcp"

        floors: list[tuple[str, str, Process, str]] = []
        if args.floor:
            for name, label, options in (("n_nio_http", "(n) SwiftNIO HTTP/1 proxy, no auth", ["--threads", "1"]),
                                         ("n_nio_http_2_loops", "(n) SwiftNIO HTTP/1 proxy, 2 event loops", ["--threads", "2"]),
                                         ("r_nio_relay", "(r) SwiftNIO byte relay, no HTTP", ["--threads", "1", "--raw"]),
                                         ("k_codec", "(k) SwiftNIO on mcp-bouncer's own HTTP/1 codec, no auth", ["--threads", "1", "--codec"])):
                floors.append((name, label, *start_floor(name, options)))

        # The default configuration: the audit trail on, to a file, arguments hashed, checkpoints
        # signed; the operational log at its default level (info).
        audit_key = work / "audit.key"
        subprocess.run([args.binary, "audit", "keygen", "--out", str(audit_key)], check=True, capture_output=True)

        def start_gateway(name: str, port: int, threads: int, tls: bool, audit: bool = True) -> Process:
            policy = work / f"{name}.yaml"
            tls_block = f"tls:\n  certificate: {cert}\n  private_key: {key}\n  reload_interval_seconds: 0" if tls else ""
            audit_block = f"audit:\n  file: {work / (name + '-audit.jsonl')}\n  signing_key: {audit_key}\n  arguments: hash" if audit else ""
            policy.write_text(POLICY.format(port=port, scheme="https" if tls else "http", tls=tls_block, audit=audit_block, upstream=upstream, hub=hub))
            process = Process(name, [args.binary, "run", "--config", str(policy), "--threads", str(threads)], work)
            processes.append(process)
            process.wait_for(f"{'https' if tls else 'http'}://127.0.0.1:{port}/healthz", verify=False)
            return process

        def token(path: str, scheme: str, port: int) -> str:
            return bench_token(signing, f"http://127.0.0.1:{upstream}", f"{scheme}://127.0.0.1:{port}{path}")

        results: dict = {}
        print(f"\nmcp-bouncer benchmark: {args.repeat} rounds x {args.seconds}s, figures alternating within a round, median per figure; "
              f"wrk -t1 -c{args.connections}, POST tools/call, keep-alive; nginx 1 worker; upstream nginx 1 worker\n", flush=True)
        one = start_gateway("gateway-1-loop", gateway_port, 1, False)
        gateway_no_audit_port = free_port()
        no_audit = start_gateway("gateway-1-loop-no-audit", gateway_no_audit_port, 1, False, audit=False)
        two = start_gateway("gateway-2-loops", gateway_two_loops_port, 2, False)
        warm = token("/exchange/mcp", "http", gateway_port)
        httpx.post(f"http://127.0.0.1:{gateway_port}/exchange/mcp", headers={"Authorization": f"Bearer {warm}"}, content=BODY).raise_for_status()
        static_one, static_two = token("/static/mcp", "http", gateway_port), token("/static/mcp", "http", gateway_two_loops_port)
        static_no_audit = token("/static/mcp", "http", gateway_no_audit_port)
        results.update(measure([
            ("a_direct", "(a) direct to upstream", f"http://127.0.0.1:{upstream}/mcp", None, up.proc.pid, args.connections),
            ("b_nginx", "(b) nginx reverse proxy", f"http://127.0.0.1:{proxy}/mcp", None, nginx_proxy.proc.pid, args.connections),
            ("b_nginx_2_workers", "(b) nginx, 2 workers", f"http://127.0.0.1:{proxy_two}/mcp", None, None, args.connections),
            ("c_gateway", "(c) mcp-bouncer, default config (audit on)", f"http://127.0.0.1:{gateway_port}/static/mcp", static_one, one.proc.pid, args.connections),
            ("c_gateway_no_audit", "(c) mcp-bouncer, audit off", f"http://127.0.0.1:{gateway_no_audit_port}/static/mcp", static_no_audit, no_audit.proc.pid, args.connections),
            ("d_exchange", "(d) mcp-bouncer, token exchange (warm)", f"http://127.0.0.1:{gateway_port}/exchange/mcp", warm, one.proc.pid, args.connections),
            ("c_gateway_2_loops", "(c) mcp-bouncer, 2 event loops", f"http://127.0.0.1:{gateway_two_loops_port}/static/mcp", static_two, two.proc.pid, args.connections),
            *[(name, label, url, None, floor.proc.pid, args.connections) for name, label, floor, url in floors],
        ], args, work))
        # Latency without queueing: one connection, one request at a time.
        results.update(measure([
            ("a_direct_1c", "(a) direct, 1 connection", f"http://127.0.0.1:{upstream}/mcp", None, up.proc.pid, 1),
            ("b_nginx_1c", "(b) nginx, 1 connection", f"http://127.0.0.1:{proxy}/mcp", None, nginx_proxy.proc.pid, 1),
            ("c_gateway_1c", "(c) mcp-bouncer, 1 connection", f"http://127.0.0.1:{gateway_port}/static/mcp", static_one, one.proc.pid, 1),
            *[(f"{name}_1c", f"{label.split(',')[0]}, 1 connection", url, None, floor.proc.pid, 1) for name, label, floor, url in floors if "2_loops" not in name],
        ], args, work))
        # Issue 28's configuration (see ISSUE_28_CONNECTIONS), the bare SwiftNIO proxies beside it.
        two_no_audit_port = free_port()
        two_no_audit = start_gateway("gateway-2-loops-no-audit", two_no_audit_port, 2, False, audit=False)
        issue_28_floors = []
        if args.floor:
            for name, options in (("r_nio_relay_64c", ["--raw"]), ("k_codec_64c", ["--codec"])):
                floor, url = start_floor(name, ["--threads", "2", *options])
                floors.append((name, name, floor, url))
                issue_28_floors.append((name, f"({name[0]}) {'byte relay' if name[0] == 'r' else 'codec'}, 2 loops, -c{ISSUE_28_CONNECTIONS}", url, None, floor.proc.pid, ISSUE_28_CONNECTIONS))
        results.update(measure([
            ("b_nginx_2_workers_64c", f"(b) nginx, 2 workers, -c{ISSUE_28_CONNECTIONS}", f"http://127.0.0.1:{proxy_two}/mcp", None, nginx_two.proc.pid, ISSUE_28_CONNECTIONS),
            ("c_gateway_64c", f"(c) mcp-bouncer, 2 loops, audit on, -c{ISSUE_28_CONNECTIONS}", f"http://127.0.0.1:{gateway_two_loops_port}/static/mcp", static_two, two.proc.pid, ISSUE_28_CONNECTIONS),
            ("c_gateway_no_audit_64c", f"(c) mcp-bouncer, 2 loops, audit off, -c{ISSUE_28_CONNECTIONS}", f"http://127.0.0.1:{two_no_audit_port}/static/mcp",
             token("/static/mcp", "http", two_no_audit_port), two_no_audit.proc.pid, ISSUE_28_CONNECTIONS),
            *issue_28_floors,
        ], args, work, wrk_threads=ISSUE_28_WRK_THREADS))
        two_no_audit.stop()
        processes.remove(two_no_audit)
        no_audit.stop()
        processes.remove(no_audit)
        nginx_two.stop()
        processes.remove(nginx_two)
        for _, _, floor, _ in floors:
            floor.stop()
            processes.remove(floor)
        two.stop()
        processes.remove(two)
        sse_token = token("/sse/mcp", "http", gateway_port)
        print(f"  opening {args.streams} SSE streams straight to the hub (baseline) ...", flush=True)
        results["sse_direct"] = sse_streams(hub, "/mcp", None, hub_control, args.streams, args.sse_samples, None)
        print(f"  (f) baseline, {results['sse_direct']['streams']} streams without a proxy: event delivery p50 {results['sse_direct']['p50_ms']:.3f} ms, "
              f"p99 {results['sse_direct']['p99_ms']:.3f} ms over {results['sse_direct']['events']} events", flush=True)
        settle = time.monotonic() + 30
        while httpx.get(f"http://127.0.0.1:{hub_control}/count").text != "0" and time.monotonic() < settle:
            time.sleep(0.2)
        print(f"  opening {args.streams} SSE streams through mcp-bouncer ...", flush=True)
        results["sse"] = sse_streams(gateway_port, "/sse/mcp", sse_token, hub_control, args.streams, args.sse_samples, one.proc.pid)
        print(f"  (f) {results['sse']['streams']} idle SSE streams through mcp-bouncer: gateway RSS {results['sse']['rss_mb']:.0f} MB; "
              f"event delivery p50 {results['sse']['p50_ms']:.3f} ms, p99 {results['sse']['p99_ms']:.3f} ms over {results['sse']['events']} events", flush=True)
        one.stop()
        processes.remove(one)
        # The default configuration's audit file: every request recorded, and it verifies.
        audit_file = work / "gateway-1-loop-audit.jsonl"
        verified = subprocess.run([args.binary, "audit", "verify", str(audit_file)], capture_output=True, text=True)
        records = sum(1 for _ in audit_file.open("rb"))
        results["audit_file"] = {"records": records, "bytes": audit_file.stat().st_size, "verified": verified.returncode == 0}
        print(f"  audit file of the default configuration: {records} records, {audit_file.stat().st_size / max(records, 1):.0f} bytes per record, "
              f"verify: {verified.stdout.strip() or verified.stderr.strip()}", flush=True)
        tls_gateway = start_gateway("gateway-tls", gateway_tls_port, 1, True)
        tls_floors = []
        if args.floor:
            for name, label, options in (("n_nio_http_tls", "(n) SwiftNIO HTTP/1 proxy, TLS", []), ("r_nio_relay_tls", "(r) SwiftNIO byte relay, TLS", ["--raw"])):
                floor, url = start_floor(name, ["--threads", "1", "--tls", cert, key, *options])
                tls_floors.append((name, label, url, None, floor.proc.pid, args.connections))
        results.update(measure([
            ("e_nginx_tls", "(e) nginx, TLS", f"https://127.0.0.1:{proxy_tls}/mcp", None, nginx_proxy.proc.pid, args.connections),
            ("e_gateway_tls", "(e) mcp-bouncer, TLS", f"https://127.0.0.1:{gateway_tls_port}/static/mcp", token("/static/mcp", "https", gateway_tls_port), tls_gateway.proc.pid, args.connections),
            *tls_floors,
        ], args, work))

        a, b, c = results["a_direct"], results["b_nginx"], results["c_gateway"]
        # Ratios of runs from the same round, so both sides saw the same host.
        throughput = paired_ratio(c, b)
        audit_cost = paired_ratio(c, results["c_gateway_no_audit"])
        cpu_per_request = {key: per_request_cpu_us(results[key], args.seconds) for key in ("c_gateway", "c_gateway_no_audit")}
        print(f"\n  audit trail: throughput on / off {audit_cost:.2f} x; gateway CPU per request (writer thread included) "
              f"{cpu_per_request['c_gateway']:.1f} µs on, {cpu_per_request['c_gateway_no_audit']:.1f} µs off")
        results["audit_cost"] = {"throughput_ratio": audit_cost, "cpu_us_per_request": cpu_per_request}
        tls = paired_ratio(results["e_gateway_tls"], results["e_nginx_tls"])
        scaling = paired_ratio(results["c_gateway_2_loops"], c)
        checks = [
            ("throughput (c) >= 0.9 x (b)", throughput, throughput >= 0.9),
            ("audit on >= 0.95 x audit off (throughput)", audit_cost, audit_cost >= 0.95),
            ("throughput TLS gateway >= 0.9 x nginx TLS", tls, tls >= 0.9),
            *[added_latency_check(p, a, b, c) for p in ("p50", "p99")],
            (f"{args.streams} idle SSE streams: RSS <= 150 MB", results["sse"]["rss_mb"], results["sse"]["rss_mb"] <= 150 and results["sse"]["streams"] == args.streams),
            ("SSE event delivery p99 <= 1 ms", results["sse"]["p99_ms"], results["sse"]["p99_ms"] <= 1.0),
            ("2 event loops >= 1.7 x 1 loop", scaling, scaling >= 1.7),
        ]
        # On a machine where wrk and the upstream share the cores with the gateway, a second
        # loop also takes CPU from them; requests per gateway CPU-second show whether the
        # gateway itself scales (no shared locks) apart from that.
        per_cpu = [r["rps"] * args.seconds / max(r["cpu_seconds"], 1e-6) for r in (c, results["c_gateway_2_loops"])]
        print(f"\n  requests per gateway CPU-second: 1 loop {per_cpu[0]:.0f}, 2 loops {per_cpu[1]:.0f} ({per_cpu[1] / per_cpu[0]:.2f} x)")
        results["requests_per_cpu_second"] = {"one_loop": per_cpu[0], "two_loops": per_cpu[1]}
        # What a second core gives other proxies on this host, in the same rounds.
        host_scaling = {"nginx_2_workers_vs_1": paired_ratio(results["b_nginx_2_workers"], b)}
        if floors:
            host_scaling["nio_http_2_loops_vs_1"] = paired_ratio(results["n_nio_http_2_loops"], results["n_nio_http"])
        print("  the same for other proxies on this host: nginx 2 workers / 1 worker "
              f"{host_scaling['nginx_2_workers_vs_1']:.2f} x"
              + (f", SwiftNIO HTTP/1 proxy 2 loops / 1 loop {host_scaling['nio_http_2_loops_vs_1']:.2f} x" if floors else ""))
        results["host_scaling"] = host_scaling
        low = [added_latency_check(p, results["a_direct_1c"], results["b_nginx_1c"], results["c_gateway_1c"]) for p in ("p50", "p99")]
        print("  added latency at one connection (no queueing), vs nginx's: "
              + ", ".join(f"{p} {ratio:.2f} x" for p, (_, ratio, _) in zip(("p50", "p99"), low)))
        if floors:
            results["floor"] = floor_context(results, args.seconds)
        checks += issue_28_targets(results, args.seconds)
        print("\ntargets:")
        for name, value, passed in checks:
            print(f"  {'PASS' if passed else 'FAIL'}  {name:48} ({value:.2f})")
        print("  ----  microbenchmarks (JWT verifier, JSON-RPC parser, policy decision, warm-path allocations): ./Benchmarks/micro")
        results["checks"] = [{"name": n, "value": v, "passed": p} for n, v, p in checks]
        write_results("bench", {"seconds": args.seconds, "repeat": args.repeat, "connections": args.connections, "results": results})
    finally:
        stop_all(processes, work)


if __name__ == "__main__":
    main()
