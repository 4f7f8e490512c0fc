"""The cost of sender-constrained tokens (see Benchmarks/dpop): one gateway, one event loop,
nginx's canned upstream, the same tools/call with a plain bearer token and with a DPoP-bound
token and a fresh proof per request (`sender_constraint: required`), alternating in each round.
Proofs are made beforehand (one per request: a replayed proof is refused) and handed out by
wrk's Lua. One proof signature check per request is the floor; this measures what it costs."""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import tempfile
import time
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from bench import CANNED, EXCHANGED, UPSTREAM_NGINX, cpu_seconds, median, signing_key, wrk  # noqa: E402
from common import Process, free_port, stop_all, write_results  # noqa: E402

POLICY = """
listen: 127.0.0.1:{port}
public_url: http://127.0.0.1:{port}
dpop: {{ iat_window_seconds: 300, replay_cache_entries: 2000000 }}
authorization_servers:
  bench:
    issuer: http://127.0.0.1:{upstream}
    jwks_uri: http://127.0.0.1:{upstream}/jwks.json
    algorithms: [ES256]
resources:
  - path: /bearer/mcp
    authorization_server: bench
    upstream: http://127.0.0.1:{upstream}/mcp
    methods: {{ tools/call: {{ list_issues: [bench:read] }} }}
  - path: /dpop/mcp
    authorization_server: bench
    upstream: http://127.0.0.1:{upstream}/mcp
    sender_constraint: required
    methods: {{ tools/call: {{ list_issues: [bench:read] }} }}
"""


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def proof_lua(proofs: Path) -> tuple[str, ...]:
    """wrk's Lua for a fresh proof per request, from a file of proofs made beforehand."""
    return (
        "local proofs = {}",
        f'for line in io.lines("{proofs}") do proofs[#proofs + 1] = line end',
        "local i = 0",
        "request = function()",
        "  i = i + 1",
        '  wrk.headers["DPoP"] = proofs[i] or proofs[#proofs]',
        "  return wrk.format()",
        "end",
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--proofs", type=int, default=60000, help="proofs made per DPoP run (more than the run sends)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bouncer-dpop-"))
    processes: list[Process] = []
    try:
        (work / "www").mkdir()
        signing = signing_key(work / "www")
        upstream, port = free_port(), free_port()
        (work / "upstream.conf").write_text(UPSTREAM_NGINX.format(dir=work, port=upstream, canned=CANNED, exchanged=EXCHANGED))
        nginx = Process("nginx-upstream", ["nginx", "-c", str(work / "upstream.conf"), "-p", str(work)], work)
        processes.append(nginx)
        nginx.wait_for(f"http://127.0.0.1:{upstream}/jwks.json")
        (work / "policy.yaml").write_text(POLICY.format(port=port, upstream=upstream))
        gateway = Process("gateway", [args.binary, "run", "--config", str(work / "policy.yaml"), "--threads", "1", "--log-level", "error"], work)
        processes.append(gateway)
        gateway.wait_for(f"http://127.0.0.1:{port}/healthz")

        key = ec.generate_private_key(ec.SECP256R1())
        numbers = key.public_key().public_numbers()
        jwk = {"kty": "EC", "crv": "P-256", "x": b64(numbers.x.to_bytes(32, "big")), "y": b64(numbers.y.to_bytes(32, "big"))}
        jkt = b64(hashlib.sha256(json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"), sort_keys=True).encode()).digest())
        now = int(time.time())

        def token(path: str, bound: bool) -> str:
            claims = {"iss": f"http://127.0.0.1:{upstream}", "sub": "bench", "aud": f"http://127.0.0.1:{port}{path}", "exp": now + 3600, "iat": now, "scope": "bench:read"}
            if bound:
                claims["cnf"] = {"jkt": jkt}
            return jwt.encode(claims, signing, algorithm="ES256", headers={"kid": "bench"})

        bearer, bound = token("/bearer/mcp", False), token("/dpop/mcp", True)
        ath = b64(hashlib.sha256(bound.encode()).digest())
        base = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        print(f"\nsender-constrained tokens: {args.repeat} rounds x {args.seconds}s, wrk -t1 -c{args.connections}, POST tools/call, one event loop", flush=True)
        runs: dict[str, list] = {"bearer": [], "dpop": []}
        pid = gateway.proc.pid
        for round_ in range(args.repeat):
            proofs = work / f"proofs-{round_}.txt"
            started = time.monotonic()
            htu = f"http://127.0.0.1:{port}/dpop/mcp"
            with proofs.open("w") as out:
                for _ in range(args.proofs):
                    claims = {"jti": uuid.uuid4().hex, "htm": "POST", "htu": htu, "iat": int(time.time()), "ath": ath}
                    out.write(jwt.encode(claims, key, algorithm="ES256", headers={"typ": "dpop+jwt", "jwk": jwk}) + "\n")
            print(f"  round {round_ + 1}: {args.proofs} proofs made in {time.monotonic() - started:.1f} s", flush=True)
            for name, url, headers, proof_file in (
                ("bearer", f"http://127.0.0.1:{port}/bearer/mcp", {**base, "Authorization": f"Bearer {bearer}"}, None),
                ("dpop", htu, {**base, "Authorization": f"DPoP {bound}"}, proofs),
            ):
                before = cpu_seconds(pid)
                run = wrk(url, None, args.seconds, args.connections, work, headers=headers, lua=proof_lua(proof_file) if proof_file else ())
                run["cpu_us_per_request"] = (cpu_seconds(pid) - before) / max(run["requests"], 1) * 1e6
                runs[name].append(run)
                print(f"  round {round_ + 1}: {name:6} {run['rps']:8.0f} req/s  p50 {run['p50_ms']:6.2f} ms  p99 {run['p99_ms']:6.2f} ms  "
                      f"cpu {run['cpu_us_per_request']:6.1f} µs/request" + (f"  ERRORS {run['errors']}" if run["errors"] else ""), flush=True)
                if name == "dpop" and run["requests"] > args.proofs:
                    print(f"  (the run sent more requests than proofs: raise --proofs)", flush=True)
        summary = {k: {f: median([r[f] for r in v]) for f in ("rps", "p50_ms", "p99_ms", "cpu_us_per_request")} for k, v in runs.items()}
        ratio = median([b["cpu_us_per_request"] / a["cpu_us_per_request"] for a, b in zip(runs["bearer"], runs["dpop"])])
        throughput = median([b["rps"] / a["rps"] for a, b in zip(runs["bearer"], runs["dpop"])])
        print("\n  median of rounds:")
        for k, f in summary.items():
            print(f"  {k:6} {f['rps']:8.0f} req/s  p50 {f['p50_ms']:6.2f} ms  p99 {f['p99_ms']:6.2f} ms  gateway cpu {f['cpu_us_per_request']:6.1f} µs/request")
        print(f"  DPoP / bearer: throughput {throughput:.2f} x, gateway CPU per request {ratio:.2f} x (paired by round)")
        write_results("dpop", {"runs": runs, "summary": summary, "cpu_ratio": ratio, "throughput_ratio": throughput})
    finally:
        stop_all(processes, work)


if __name__ == "__main__":
    main()
