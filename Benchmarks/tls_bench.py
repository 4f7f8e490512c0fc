"""Runs the TLS benchmark (see Benchmarks/tls). Everything on 127.0.0.1, bounded in time."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import tempfile
from pathlib import Path

import httpx

from common import ROOT, Process, free_port, stop_all, write_results  # noqa: E402  (the same directory)
from bench import bench_token, median, signing_key  # noqa: E402  (the same directory)

BULK_BYTES = 1024 * 1024
CANNED = '{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"ok"}]}}'

NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
error_log {dir}/nginx-error.log warn;
pid {dir}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 1000000;
    sendfile on;
    # The upstream and key server, plain http.
    server {{
        listen 127.0.0.1:{http_port};
        root {dir}/www-upstream;
        default_type application/octet-stream;
        location = /jwks.json {{ default_type application/json; }}
        location = /mcp {{ default_type application/json; return 200 '{canned}'; }}
        # POST to a static file is 405 in nginx; serve the file anyway.
        location / {{ error_page 405 =200 $uri; }}
    }}
    # The baseline: nginx terminating TLS with the same certificate and OpenSSL.
    server {{
        listen 127.0.0.1:{tls_port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        root {dir}/www-tls;
        default_type application/octet-stream;
        location = /mcp {{ default_type application/json; return 200 '{canned}'; }}
        location / {{ error_page 405 =200 $uri; }}
    }}
}}
"""

POLICY = """
listen: 127.0.0.1:{port}
public_url: https://localhost:{port}
tls:
  certificate: {cert}
  private_key: {key}
  reload_interval_seconds: 0
authorization_servers:
  bench:
    issuer: http://127.0.0.1:{http_port}
    jwks_uri: http://127.0.0.1:{http_port}/jwks.json
    algorithms: [ES256]
resources:
  - path: /mcp
    authorization_server: bench
    upstream: http://127.0.0.1:{http_port}/mcp
    methods:
      tools/call:
        list_issues: [bench:read]
  - path: /bulk/mcp
    authorization_server: bench
    upstream: http://127.0.0.1:{http_port}/bulk
    methods:
      tools/call:
        list_issues: [bench:read]
"""


def handshakes_per_second(port: int, seconds: int) -> float:
    out = subprocess.run(["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new", "-time", str(seconds)],
                         capture_output=True, text=True, timeout=seconds * 4 + 30).stdout
    match = re.search(r"(\d+) connections in (\d+) real seconds", out)
    if not match:
        raise RuntimeError(f"cannot parse openssl s_time output:\n{out}")
    return int(match.group(1)) / max(int(match.group(2)), 1)


def wrk(url: str, token: str | None, seconds: int, connections: int, directory: Path) -> dict:
    script = directory / "post.lua"
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "list_issues", "arguments": {}}})
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    lua_headers = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
    script.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n{lua_headers}\n')
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
                         capture_output=True, text=True, timeout=seconds * 4 + 30).stdout
    requests = re.search(r"Requests/sec:\s+([\d.]+)", out)
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if not requests or not transfer:
        raise RuntimeError(f"cannot parse wrk output:\n{out}")
    unit = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}[transfer.group(2)]
    return {"requests_per_second": float(requests.group(1)), "bytes_per_second": float(transfer.group(1)) * unit,
            "errors": int(non2xx.group(1)) if non2xx else 0}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure, alternating nginx and mcp-bouncer; the median is reported")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bouncer-tls-bench-"))
    processes: list[Process] = []
    try:
        payload = os.urandom(BULK_BYTES)
        (work / "www-upstream").mkdir()
        (work / "www-upstream" / "bulk").write_bytes(payload)
        (work / "www-tls" / "bulk").mkdir(parents=True)
        (work / "www-tls" / "bulk" / "mcp").write_bytes(payload)
        cert, key = str(work / "cert.pem"), str(work / "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
                        "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", key, "-out", cert],
                       check=True, capture_output=True)
        signing = signing_key(work / "www-upstream")

        http_port, nginx_tls_port, gateway_port = free_port(), free_port(), free_port()
        (work / "nginx.conf").write_text(NGINX_CONF.format(dir=work, http_port=http_port, tls_port=nginx_tls_port, cert=cert, key=key, canned=CANNED))
        nginx = Process("nginx", ["nginx", "-c", str(work / "nginx.conf"), "-p", str(work)], work)
        processes.append(nginx)
        nginx.wait_for(f"http://127.0.0.1:{http_port}/jwks.json")

        (work / "policy.yaml").write_text(POLICY.format(port=gateway_port, cert=cert, key=key, http_port=http_port))
        gateway = Process("mcp-bouncer", [args.binary, "run", "--config", str(work / "policy.yaml"), "--threads", "1", "--log-level", "warning"], work)
        processes.append(gateway)
        gateway.wait_for(f"https://127.0.0.1:{gateway_port}/healthz", verify=False)

        def token(resource: str) -> str:
            return bench_token(signing, f"http://127.0.0.1:{http_port}", resource)

        gateway_url = f"https://localhost:{gateway_port}"
        nginx_url = f"https://localhost:{nginx_tls_port}"
        check = httpx.post(f"{gateway_url}/bulk/mcp", verify=False, headers={"Authorization": f"Bearer {token(gateway_url + '/bulk/mcp')}"},
                           json={"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "list_issues"}})
        if check.status_code != 200 or len(check.content) != BULK_BYTES:
            raise RuntimeError(f"gateway bulk check failed: {check.status_code} {len(check.content)} bytes\n{gateway.log_path.read_text()}")

        print(f"\nTLS benchmark, median of {args.repeat} x {args.seconds}s per figure (alternating), one event loop for the gateway, one worker for nginx, same certificate (ECDSA P-256)")
        print(f"OpenSSL: {subprocess.run(['openssl', 'version'], capture_output=True, text=True).stdout.strip()}\n")
        # Each figure: `repeat` runs, nginx and mcp-bouncer alternating, median reported (single
        # runs on a shared 2-core machine move by +-30%).
        results: dict = {"nginx": {}, "mcp-bouncer": {}}
        figures = {
            "handshakes_per_second": {
                "nginx": lambda: handshakes_per_second(nginx_tls_port, args.seconds),
                "mcp-bouncer": lambda: handshakes_per_second(gateway_port, args.seconds),
            },
            "bulk": {
                "nginx": lambda: wrk(f"{nginx_url}/bulk/mcp", None, args.seconds, 4, work),
                "mcp-bouncer": lambda: wrk(f"{gateway_url}/bulk/mcp", token(gateway_url + "/bulk/mcp"), args.seconds, 4, work),
            },
            "small": {
                "nginx": lambda: wrk(f"{nginx_url}/mcp", None, args.seconds, 16, work),
                "mcp-bouncer": lambda: wrk(f"{gateway_url}/mcp", token(gateway_url + "/mcp"), args.seconds, 16, work),
            },
        }
        for figure, measures in figures.items():
            runs: dict[str, list] = {name: [] for name in measures}
            for _ in range(args.repeat):
                for name, measure in measures.items():
                    runs[name].append(measure())
            for name, values in runs.items():
                results[name][figure] = median(values, {"bulk": "bytes_per_second", "small": "requests_per_second"}.get(figure))

        print(f"{'':14}{'handshakes/s':>14}{'bulk MB/s':>12}{'small req/s':>14}")
        for name in ("nginx", "mcp-bouncer"):
            r = results[name]
            print(f"{name:14}{r['handshakes_per_second']:14.0f}{r['bulk']['bytes_per_second'] / 1024**2:12.1f}{r['small']['requests_per_second']:14.0f}")
        g, n = results["mcp-bouncer"], results["nginx"]
        print(f"{'ratio':14}{g['handshakes_per_second'] / n['handshakes_per_second']:14.2f}"
              f"{g['bulk']['bytes_per_second'] / n['bulk']['bytes_per_second']:12.2f}{g['small']['requests_per_second'] / n['small']['requests_per_second']:14.2f}")
        print("\n(mcp-bouncer's small requests include JWT verification, the scope decision and a proxied upstream hop; nginx answers them itself)")
        errors = {name: results[name][kind]["errors"] for name in results for kind in ("bulk", "small")}
        if any(errors.values()):
            print(f"non-2xx responses: {errors}")
        write_results("tls", {"seconds": args.seconds, "repeat": args.repeat, "results": results})
    finally:
        stop_all(processes, work)


if __name__ == "__main__":
    main()
