"""The DPoP-bound upstream leg end to end, real parts only (issue 27, item 6): authgent-server
requiring DPoP with nonces (AUTHGENT_REQUIRE_DPOP) binds the exchanged token to the gateway's
key (`token_exchange.dpop_key`: a PEM file, and `generate`), and an upstream that checks every
proof itself (servers/dpop_guard.py: `cnf.jkt`, signature, htm/htu, ath, jti, its own nonce,
changed unannounced every few requests) serves the client's calls. The client's token is
DPoP-bound too, to the client's own key: nothing of it reaches the upstream."""

from __future__ import annotations

import json
import sys
import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from interop_stack import HERE, AuthgentProcess, Process, free_port
from test_audit import INITIALIZE
from test_bridge import LEGACY_PYTHON, modern_request
from test_dpop import Prover
from test_gateway import ACCEPT

AUDIENCE = "https://jira.internal/mcp"

POLICY = """
listen: 127.0.0.1:{port}
public_url: http://127.0.0.1:{port}
audit:
  file: {audit}
authorization_servers:
  authgent:
    issuer: {authgent}
    client: {{ id: {client_id}, secret: "{client_secret}" }}
resources:
  - path: /mcp
    authorization_server: authgent
    scopes_supported: [jira:read]
    upstream: {upstream}/mcp
    upstream_credentials:
      token_exchange:
        resource: {audience}
        scope: jira:read
        dpop_key: "${{file:{key}}}"
    methods: {{ initialize: [], notifications/*: [], tools/list: [jira:read], tools/call: [jira:read] }}
  - path: /gen/mcp
    authorization_server: authgent
    scopes_supported: [jira:read]
    upstream: {upstream}/mcp
    upstream_credentials:
      token_exchange: {{ resource: {audience}, scope: jira:read, dpop_key: generate }}
    methods: {{ initialize: [], notifications/*: [], tools/list: [jira:read], tools/call: [jira:read] }}
  - path: /v1/mcp
    authorization_server: authgent
    scopes_supported: [jira:read]
    upstream: {v1_upstream}/mcp
    upstream_protocol: legacy
    client_responses: [jira:read]
    upstream_credentials:
      token_exchange: {{ resource: {audience}, scope: jira:read, dpop_key: generate }}
    methods: {{ initialize: [], server/discover: [], notifications/*: [], tools/list: [jira:read], tools/call: [jira:read] }}
"""


@pytest.fixture(scope="module")
def leg(tmp_path_factory, bouncer_bin):
    work = tmp_path_factory.mktemp("dpop-upstream")
    authgent = AuthgentProcess(work, AUTHGENT_REQUIRE_DPOP="true")
    processes: list[Process] = []
    try:
        authgent.start()
        gateway_client = httpx.post(f"{authgent.url}/register", json={
            "client_name": "mcp-bouncer", "token_endpoint_auth_method": "client_secret_basic",
            "grant_types": ["urn:ietf:params:oauth:grant-type:token-exchange"], "scope": "jira:read"}).json()
        upstream_port = free_port()
        upstream = f"http://127.0.0.1:{upstream_port}"
        verdicts = work / "verdicts.jsonl"
        guarded = Process("dpop-upstream", [sys.executable, str(HERE / "servers" / "legacy_upstream.py"), "--port", str(upstream_port),
                                            "--record", str(work / "upstream.jsonl"), "--require-dpop-bound-token", authgent.url, AUDIENCE,
                                            f"{authgent.url}/.well-known/jwks.json", f"{upstream}/mcp", str(verdicts)], work)
        processes.append(guarded)
        guarded.wait_for(f"{upstream}/none")
        # The protocol bridge's upstream: the MCP Python SDK 1.x, checking proofs the same way.
        v1_port = free_port()
        v1_upstream = f"http://127.0.0.1:{v1_port}"
        v1 = Process("dpop-v1-upstream", [str(LEGACY_PYTHON), str(HERE / "servers" / "legacy_v1_upstream.py"), "--port", str(v1_port),
                                          "--record", str(work / "v1.jsonl"), "--require-dpop-bound-token", authgent.url, AUDIENCE,
                                          f"{authgent.url}/.well-known/jwks.json", f"{v1_upstream}/mcp", str(work / "v1-verdicts.jsonl")], work)
        processes.append(v1)
        v1.wait_for(f"{v1_upstream}/not-served")
        gateway_key = Prover()  # its key, as the PEM the policy reads
        key = work / "dpop.pem"
        key.write_bytes(gateway_key.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        port = free_port()
        policy = work / "policy.yaml"
        policy.write_text(POLICY.format(port=port, authgent=authgent.url, client_id=gateway_client["client_id"], client_secret=gateway_client["client_secret"],
                                        upstream=upstream, v1_upstream=v1_upstream, audience=AUDIENCE, key=key, audit=work / "audit.jsonl"))
        gateway = Process("dpop-upstream-gateway", [bouncer_bin, "run", "--config", str(policy), "--log-level", "debug"], work)
        processes.append(gateway)
        gateway.wait_for(f"http://127.0.0.1:{port}/healthz")
        yield {"authgent": authgent.url, "gateway": f"http://127.0.0.1:{port}", "upstream": upstream, "record": work / "upstream.jsonl", "verdicts": verdicts,
               "thumbprint": gateway_key.thumbprint(), "log": gateway.log_path,
               "v1_record": work / "v1.jsonl", "v1_verdicts": work / "v1-verdicts.jsonl", "audit": work / "audit.jsonl"}
    finally:
        for process in reversed(processes):
            process.stop()
        authgent.stop()


def bound_client_token(leg, prover: Prover, path: str) -> str:
    """The client's own DPoP-bound token: authgent asks for its nonce first (RFC 9449 §8)."""
    client = httpx.post(f"{leg['authgent']}/register", json={"client_name": "agent", "grant_types": ["client_credentials"], "scope": "jira:read",
                                                             "token_endpoint_auth_method": "client_secret_basic"}).json()
    url = f"{leg['authgent']}/token"
    nonce = None
    for _ in range(2):
        response = httpx.post(url, auth=(client["client_id"], client["client_secret"]), headers={"DPoP": prover.proof("POST", url, nonce=nonce)},
                              data={"grant_type": "client_credentials", "scope": "jira:read", "resource": leg["gateway"] + path})
        if response.status_code == 401 and "use_dpop_nonce" in response.text:
            nonce = response.headers["dpop-nonce"]
            continue
        break
    assert nonce is not None, "authgent asks for a nonce when it requires DPoP"
    assert response.status_code == 200 and response.json()["token_type"] == "DPoP", response.text
    return response.json()["access_token"]


def call(leg, path: str, prover: Prover, token: str, method: str, params: dict, session: str | None = None) -> httpx.Response:
    url = leg["gateway"] + path
    headers = {"Accept": ACCEPT, "Content-Type": "application/json", "Authorization": f"DPoP {token}", "DPoP": prover.proof("POST", url, token)}
    if session:
        headers.update({"Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"})
    return httpx.post(url, headers=headers, content=json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}), timeout=30)


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("path", ["/mcp", "/gen/mcp"])
def test_the_upstream_gets_a_token_bound_to_the_gateways_key_and_a_proof_per_request(leg, path):
    prover = Prover()
    token = bound_client_token(leg, prover, path)
    before_records, before_verdicts = len(lines(leg["record"])), len(lines(leg["verdicts"]))
    opened = call(leg, path, prover, token, "initialize", INITIALIZE)
    assert opened.status_code == 200, opened.text
    session = opened.headers["mcp-session-id"]
    for n in range(9):
        called = call(leg, path, prover, token, "tools/call", {"name": "list_issues", "arguments": {"project": f"P{n}"}}, session)
        assert called.status_code == 200 and f"P{n}-1" in called.text, called.text

    verdicts = [v["verdict"] for v in lines(leg["verdicts"])[before_verdicts:]]
    # Every request the upstream let through carried a valid proof; the only refusals are its
    # requests for a nonce (the first one and after each unannounced change), each answered
    # by the gateway sending the request again.
    assert set(verdicts) <= {"ok", "use_dpop_nonce"}, verdicts
    assert verdicts.count("ok") == 10, verdicts
    assert verdicts.count("use_dpop_nonce") >= 2, verdicts
    assert all(a != "use_dpop_nonce" or b == "ok" for a, b in zip(verdicts, verdicts[1:])), "a resend follows each nonce request"
    jtis = [v["jti"] for v in lines(leg["verdicts"])[before_verdicts:] if v["verdict"] == "ok"]
    assert len(set(jtis)) == len(jtis), "a fresh proof per request"

    upstream = lines(leg["record"])[before_records:]
    tokens = {r["headers"]["authorization"][0] for r in upstream}
    assert all(t.startswith("DPoP ") for t in tokens), tokens
    assert token not in json.dumps(upstream), "the client's token never reaches the upstream"
    assert all(len(r["headers"]["dpop"]) == 1 for r in upstream)
    assert len(tokens) == 1, "the exchanged token is cached (with its binding) across calls"
    exchanged = jwt.decode(tokens.pop()[len("DPoP "):], options={"verify_signature": False})
    assert exchanged["aud"] == AUDIENCE and "act" in exchanged
    if path == "/mcp":
        assert exchanged["cnf"] == {"jkt": leg["thumbprint"]}, "bound to the key the policy names"
    else:
        assert exchanged["cnf"]["jkt"] != leg["thumbprint"], "bound to the key the gateway made"

    # The audit trail names the key the upstream token is bound to.
    deadline = time.monotonic() + 10
    records: list[dict] = []
    while time.monotonic() < deadline and len(records) < 10:
        records = [r for r in lines(leg["audit"]) if r.get("event") == "request" and r.get("resource") == path and r.get("upstream_dpop_key")]
        time.sleep(0.1)
    assert len(records) >= 10 and {r["upstream_dpop_key"] for r in records} == {exchanged["cnf"]["jkt"]}, records
    assert all(r["upstream_credential"] == "token_exchange" for r in records)


def test_the_upstream_refuses_the_exchanged_token_without_the_gateways_proof(leg):
    """What the gateway's proofs protect: the exchanged token alone, taken from the wire, is
    worth nothing, as Bearer or with another key's proof."""
    seen = [r for r in lines(leg["record"]) if "authorization" in r["headers"]]
    assert seen, "runs after the calls above"
    upstream_token = seen[-1]["headers"]["authorization"][0][len("DPoP "):]
    url = leg["upstream"] + "/mcp"
    before = len(lines(leg["verdicts"]))
    attacker = Prover()
    for headers in ({"Authorization": f"Bearer {upstream_token}"},
                    {"Authorization": f"DPoP {upstream_token}", "DPoP": attacker.proof("POST", url, upstream_token)}):
        refused = httpx.post(url, headers={**headers, "Accept": ACCEPT, "Content-Type": "application/json"},
                             content=json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}), timeout=30)
        assert refused.status_code == 401, refused.text
    verdicts = [v["verdict"] for v in lines(leg["verdicts"])[before:]]
    assert verdicts[0].startswith("no DPoP-bound token") and "cnf.jkt" in verdicts[1], verdicts


def test_the_bridge_holds_its_upstream_session_with_proofs_too(leg):
    """A 2026-07-28 client through the protocol bridge to the SDK 1.x upstream: the session the
    bridge opens (initialize, initialized), the call, and the answer to the upstream's
    elicitation each carry a proof of the gateway's key; the upstream's nonce requests are
    answered by resends the client never sees."""
    if not LEGACY_PYTHON.exists():
        pytest.fail(f"{LEGACY_PYTHON} missing: scripts/test installs .venv-legacy")
    prover = Prover()
    path = "/v1/mcp"
    token = bound_client_token(leg, prover, path)
    url = leg["gateway"] + path

    def post(body: dict, name: str) -> httpx.Response:
        headers = {"Authorization": f"DPoP {token}", "DPoP": prover.proof("POST", url, token), "MCP-Protocol-Version": "2026-07-28",
                   "Mcp-Method": "tools/call", "Mcp-Name": name, "Accept": ACCEPT, "Content-Type": "application/json"}
        return httpx.post(url, headers=headers, content=json.dumps(body), timeout=30)

    listed = post(modern_request("tools/call", {"name": "list_issues", "arguments": {"project": "BR"}}), "list_issues")
    assert listed.status_code == 200 and "BR-1" in listed.text, listed.text
    capabilities = {"elicitation": {}}
    asked = post(modern_request("tools/call", {"name": "choose_project", "arguments": {}}, capabilities), "choose_project").json()
    assert asked["result"]["resultType"] == "input_required", asked
    params = {"name": "choose_project", "arguments": {}, "requestState": asked["result"]["requestState"],
              "inputResponses": {"upstream": {"action": "accept", "content": {"project": "DPOP"}}}}
    done = post(modern_request("tools/call", params, capabilities, id=2), "choose_project")
    assert done.status_code == 200 and "project: DPOP" in done.text, done.text

    verdicts = [v["verdict"] for v in lines(leg["v1_verdicts"])]
    assert set(verdicts) <= {"ok", "use_dpop_nonce"} and "use_dpop_nonce" in verdicts, verdicts
    upstream = [r for r in lines(leg["v1_record"]) if r["path"] == "/mcp"]
    methods = [r["body"].get("method") if isinstance(r["body"], dict) else None for r in upstream]
    assert {"initialize", "notifications/initialized", "tools/call"} <= set(methods), methods
    assert any(isinstance(r["body"], dict) and "result" in r["body"] for r in upstream), "the elicitation's answer went upstream"
    assert all(r["headers"]["authorization"][0].startswith("DPoP ") and len(r["headers"]["dpop"]) == 1 for r in upstream)
    assert token not in json.dumps(upstream), "the client's token never reaches the upstream"
    jtis = [v["jti"] for v in lines(leg["v1_verdicts"]) if v["verdict"] == "ok"]
    assert len(jtis) == len(set(jtis)), "a fresh proof per request"
