"""RFC 8693 token exchange toward a strict upstream, and RFC 7662 introspection of opaque
tokens, against authgent-server and nanoidp."""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from pathlib import Path

import httpx
import pytest

from interop_stack import HERE, AuthgentProcess, Process, free_port

UPSTREAM_RESOURCE = "https://jira.internal/mcp"

POLICY = """
listen: 127.0.0.1:{port}
public_url: http://127.0.0.1:{port}
limits:
  # authgent's exchanged tokens live 300 s: cache them for 3 s so the test sees a refresh.
  exchange_expiry_margin_seconds: 297
  authorization_server_timeout_seconds: 5
authorization_servers:
  authgent:
    issuer: {authgent}
    client: {{ id: {client_id}, secret: "{client_secret}" }}
  authgent-opaque:
    issuer: {authgent}
    token_format: opaque
    client: {{ id: {client_id}, secret: "{client_secret}", auth_method: client_secret_post }}
  nanoidp-opaque:
    issuer: {nanoidp}
    token_format: opaque
    client: {{ id: demo-client, secret: demo-secret }}
resources:
  - path: /mcp
    authorization_server: authgent
    scopes_supported: [jira:read]
    upstream: {guarded}/mcp
    upstream_credentials:
      token_exchange:
        resource: {upstream_resource}
        scope: jira:read
        tools:
          create_issue: {{ scope: jira:write }}
    methods:
      initialize: []
      notifications/*: []
      tools/list: [jira:read]
      tools/call:
        list_issues: [jira:read]
        create_issue: [jira:write]
  - path: /opaque/mcp
    authorization_server: authgent-opaque
    upstream: {plain}/mcp
    methods: {{ initialize: [], notifications/*: [], tools/list: [jira:read] }}
  - path: /nano/mcp
    authorization_server: nanoidp-opaque
    upstream: {plain}/mcp
    methods: {{ initialize: [], notifications/*: [], tools/list: [jira:read] }}
"""


def claims(token: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))


@pytest.fixture(scope="module")
def env(stack, tmp_path_factory):
    work = tmp_path_factory.mktemp("exchange")
    authgent = AuthgentProcess(work)
    processes: list[Process] = []
    try:
        authgent.start()
        gateway_client = httpx.post(f"{authgent.url}/register", json={
            "client_name": "mcp-bouncer", "token_endpoint_auth_method": "client_secret_basic",
            "grant_types": ["urn:ietf:params:oauth:grant-type:token-exchange", "client_credentials"], "scope": "jira:read jira:write"}).json()
        guarded_port = free_port()
        guarded = Process("guarded-upstream", [sys.executable, str(HERE / "servers" / "legacy_upstream.py"), "--port", str(guarded_port),
                                               "--record", str(work / "guarded.jsonl"),
                                               "--require-exchanged-token", authgent.url, UPSTREAM_RESOURCE, f"{authgent.url}/.well-known/jwks.json"], work)
        processes.append(guarded)
        guarded.wait_for(f"http://127.0.0.1:{guarded_port}/none")
        port = free_port()
        policy = work / "policy.yaml"
        policy.write_text(POLICY.format(port=port, authgent=authgent.url, nanoidp=stack.nanoidp, client_id=gateway_client["client_id"],
                                        client_secret=gateway_client["client_secret"], guarded=f"http://127.0.0.1:{guarded_port}",
                                        plain=stack.upstream, upstream_resource=UPSTREAM_RESOURCE))
        binary = os.environ.get("BOUNCER_BIN") or str(HERE.parent.parent / ".build" / "debug" / "mcp-bouncer")
        gateway = Process("exchange-gateway", [binary, "run", "--config", str(policy), "--log-level", "debug"], work)
        processes.append(gateway)
        gateway.wait_for(f"http://127.0.0.1:{port}/healthz")
        yield {"authgent": authgent, "gateway": f"http://127.0.0.1:{port}", "guarded": f"http://127.0.0.1:{guarded_port}",
               "record": work / "guarded.jsonl", "gateway_log": gateway.log_path}
    finally:
        for process in reversed(processes):
            process.stop()
        authgent.stop()


def client_token(env, scope: str, path: str = "/mcp") -> str:
    authgent = env["authgent"].url
    client = httpx.post(f"{authgent}/register", json={"client_name": "agent", "grant_types": ["client_credentials"], "scope": scope,
                                                      "token_endpoint_auth_method": "client_secret_basic"}).json()
    response = httpx.post(f"{authgent}/token", auth=(client["client_id"], client["client_secret"]),
                          data={"grant_type": "client_credentials", "scope": scope, "resource": env["gateway"] + path})
    response.raise_for_status()
    return response.json()["access_token"]


def call(env, token: str, method: str, params: dict | None = None, path: str = "/mcp", session: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    if session:
        headers.update({"Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"})
    body = {"jsonrpc": "2.0", "id": 1, "method": method, **({"params": params} if params is not None else {})}
    return httpx.post(env["gateway"] + path, headers=headers, content=json.dumps(body), timeout=30)


def open_session(env, token: str, path: str = "/mcp") -> str:
    response = call(env, token, "initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}}, path)
    assert response.status_code == 200, response.text
    return response.headers["mcp-session-id"]


def upstream_tokens(env) -> list[str]:
    if not env["record"].exists():
        return []
    records = [json.loads(line) for line in env["record"].read_text().splitlines()]
    return [r["headers"]["authorization"][0][len("Bearer "):] for r in records if "authorization" in r["headers"]]


def test_the_upstream_refuses_the_clients_own_token(env):
    token = client_token(env, "jira:read")
    direct = httpx.post(env["guarded"] + "/mcp", headers={"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"},
                        json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert direct.status_code == 401


def test_exchanged_token_reaches_the_upstream_and_the_original_never_does(env):
    token = client_token(env, "jira:read jira:write")
    session = open_session(env, token)
    response = call(env, token, "tools/call", {"name": "list_issues", "arguments": {"project": "EX"}}, session=session)
    assert response.status_code == 200, response.text
    assert "EX-1" in response.text
    seen = upstream_tokens(env)
    assert seen and token not in seen
    exchanged = claims(seen[-1])
    assert exchanged["aud"] == UPSTREAM_RESOURCE
    assert "act" in exchanged
    assert exchanged["scope"] == "jira:read"


def test_per_tool_scope_and_one_exchange_per_token_until_expiry(env):
    token = client_token(env, "jira:read jira:write")
    session = open_session(env, token)
    before = len(upstream_tokens(env))
    for _ in range(3):
        assert call(env, token, "tools/call", {"name": "list_issues", "arguments": {}}, session=session).status_code == 200
    reads = upstream_tokens(env)[before:]
    assert len(reads) == 3 and len(set(reads)) == 1, "three calls, one exchange"
    write = call(env, token, "tools/call", {"name": "create_issue", "arguments": {"title": "t"}}, session=session)
    assert write.status_code == 200, write.text
    assert claims(upstream_tokens(env)[-1])["scope"] == "jira:write", "create_issue gets its own, differently scoped token"
    time.sleep(3.5)
    assert call(env, token, "tools/call", {"name": "list_issues", "arguments": {}}, session=session).status_code == 200
    assert upstream_tokens(env)[-1] != reads[0], "a new exchange once the cached token is near expiry"


def test_authorization_server_down_fails_closed_then_recovers(env):
    token = client_token(env, "jira:read jira:write")
    session = open_session(env, token)
    env["authgent"].stop()
    try:
        before = len(upstream_tokens(env))
        # create_issue needs its own exchange (another scope), nothing is cached for it. The
        # inbound JWT still verifies (keys are cached), the exchange cannot happen, and nothing
        # is forwarded.
        response = call(env, token, "tools/call", {"name": "create_issue", "arguments": {"title": "x"}}, session=session)
        assert response.status_code == 503, response.text
        assert response.json()["error"]["data"]["cause"] == "authorization_server_unavailable"
        assert len(upstream_tokens(env)) == before
        assert token not in upstream_tokens(env)
    finally:
        env["authgent"].start()
    deadline = time.monotonic() + 30
    while True:
        response = call(env, token, "tools/call", {"name": "create_issue", "arguments": {"title": "x"}}, session=session)
        if response.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert response.status_code == 200, response.text


def test_introspection_of_opaque_tokens_at_authgent(env):
    token = client_token(env, "jira:read", path="/opaque/mcp")
    assert open_session(env, token, path="/opaque/mcp")
    # A revoked token is inactive at introspection, so refused.
    authgent = env["authgent"].url
    client = httpx.post(f"{authgent}/register", json={"client_name": "agent", "grant_types": ["client_credentials"], "scope": "jira:read",
                                                      "token_endpoint_auth_method": "client_secret_post"}).json()
    revoked = httpx.post(f"{authgent}/token", data={"grant_type": "client_credentials", "scope": "jira:read", "resource": env["gateway"] + "/opaque/mcp",
                                                    "client_id": client["client_id"], "client_secret": client["client_secret"]}).json()["access_token"]
    httpx.post(f"{authgent}/revoke", data={"token": revoked, "client_id": client["client_id"], "client_secret": client["client_secret"]}).raise_for_status()
    response = call(env, revoked, "tools/list", {}, path="/opaque/mcp")
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_introspection_at_nanoidp(env, stack):
    token = stack.nanoidp_token("jira:read", resource=env["gateway"] + "/nano/mcp")
    assert open_session(env, token, path="/nano/mcp")
    other = stack.nanoidp_token("jira:read", resource="http://127.0.0.1:1/elsewhere")
    response = call(env, other, "tools/list", {}, path="/nano/mcp")
    assert response.status_code == 401, "introspection said active, but the audience is another resource's"
    revoked = stack.nanoidp_token("jira:read", resource=env["gateway"] + "/nano/mcp")
    httpx.post(f"{stack.nanoidp}/revoke", auth=("demo-client", "demo-secret"), data={"token": revoked}).raise_for_status()
    assert call(env, revoked, "tools/list", {}, path="/nano/mcp").status_code == 401
