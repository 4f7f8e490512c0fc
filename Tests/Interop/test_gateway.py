"""End-to-end: the official MCP Python SDK client, real authorization servers and a legacy
MCP server, with mcp-bouncer in between."""

from __future__ import annotations

import base64
import json
import re
import time
from urllib.parse import parse_qs, urlparse

import anyio
import httpx
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.auth import OAuthClientProvider, TokenStorage
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientMetadata

ACCEPT = "application/json, text/event-stream"


class MemoryStorage(TokenStorage):
    def __init__(self):
        self.tokens = None
        self.client_info = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client_info

    async def set_client_info(self, client_info):
        self.client_info = client_info


def rpc(stack, url, token, method, params=None, *, id=1, session=None, headers=None):
    """One raw JSON-RPC POST through the gateway."""
    body = {"jsonrpc": "2.0", "id": id, "method": method}
    if params is not None:
        body["params"] = params
    request_headers = {"Accept": ACCEPT, "Content-Type": "application/json"}
    if token:
        request_headers["Authorization"] = f"Bearer {token}"
    if session:
        request_headers["Mcp-Session-Id"] = session
        request_headers["MCP-Protocol-Version"] = "2025-11-25"
    request_headers.update(headers or {})
    return httpx.post(url, headers=request_headers, content=json.dumps(body), timeout=30)


def initialize(stack, url, token) -> str:
    response = rpc(stack, url, token, "initialize", {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}})
    assert response.status_code == 200, response.text
    session = response.headers["mcp-session-id"]
    note = httpx.post(url, headers={"Authorization": f"Bearer {token}", "Accept": ACCEPT, "Content-Type": "application/json",
                                    "Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"},
                      content=json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
    assert note.status_code == 202, note.text
    return session


def sse_messages(text: str) -> list[dict]:
    return [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:") and line[5:].strip()]


def challenge_params(header: str) -> dict:
    """RFC 6750 section 3 syntax: Bearer, then comma-separated key="value" pairs, each once."""
    assert header.startswith("Bearer ")
    pairs = re.findall(r'([a-z_]+)="([^"\\]*)"(?:, |$)', header[len("Bearer "):])
    assert ", ".join(f'{k}="{v}"' for k, v in pairs) == header[len("Bearer "):], header
    params = dict(pairs)
    assert len(params) == len(pairs), header
    return params


# --- discovery and challenges ---------------------------------------------------------


def test_no_token_gets_401_with_resource_metadata_and_scope(stack):
    response = rpc(stack, stack.jira, None, "tools/list")
    assert response.status_code == 401
    params = challenge_params(response.headers["www-authenticate"])
    assert params == {"resource_metadata": f"{stack.gateway}/.well-known/oauth-protected-resource/jira/mcp", "scope": "jira:read"}
    assert "error" not in params


def test_protected_resource_metadata(stack):
    document = httpx.get(f"{stack.gateway}/.well-known/oauth-protected-resource/jira/mcp").json()
    assert document == {
        "resource": stack.jira,
        "authorization_servers": [stack.authgent],
        "scopes_supported": ["jira:read"],
        "bearer_methods_supported": ["header"],
        "resource_name": "Legacy Jira",
        # RFC 9728 §2: what sender-constrained tokens the resource takes (issue 27).
        "dpop_signing_alg_values_supported": ["ES256", "ES384", "EdDSA", "PS256", "RS256"],
        "dpop_bound_access_tokens_required": False,
        "tls_client_certificate_bound_access_tokens": False,
    }
    rsa = httpx.get(f"{stack.gateway}/.well-known/oauth-protected-resource/rsa/mcp").json()
    assert rsa["resource"] == stack.rsa and rsa["authorization_servers"] == [stack.nanoidp]
    # Two resources: the root document would be ambiguous, so there is none.
    assert httpx.get(f"{stack.gateway}/.well-known/oauth-protected-resource").status_code == 404


def test_token_in_query_string_is_invalid_request(stack):
    token = stack.authgent_token("jira:read")
    before = len(stack.upstream_requests())
    response = httpx.post(f"{stack.jira}?access_token={token}", headers={"Accept": ACCEPT, "Content-Type": "application/json"},
                          content=json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
    assert response.status_code == 400
    assert challenge_params(response.headers["www-authenticate"])["error"] == "invalid_request"
    assert len(stack.upstream_requests()) == before


# --- the SDK's own OAuth clients ------------------------------------------------------


def test_sdk_client_credentials_discovers_everything_and_calls_a_tool(stack):
    client = stack.register_client("jira:read")

    async def main():
        auth = ClientCredentialsOAuthProvider(stack.jira, MemoryStorage(), client["client_id"], client["client_secret"],
                                              scope="jira:read", issuer=stack.authgent)
        async with httpx2.AsyncClient(auth=auth) as http:
            async with streamable_http_client(stack.jira, http_client=http) as (read, write, *_):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    tools = await session.list_tools()
                    # Filtered to the token: jira:read calls list_issues and slow_report only.
                    assert {t.name for t in tools.tools} == {"list_issues", "slow_report"}
                    result = await session.call_tool("list_issues", {"project": "OPS"})
                    assert "OPS-1" in result.content[0].text
                    progress = []

                    async def on_progress(value, total, message):
                        progress.append(value)

                    result = await session.call_tool("slow_report", {"steps": 3}, progress_callback=on_progress)
                    assert result.content[0].text == "report done after 3 steps"
                    assert progress == [1, 2, 3]
        return auth.context.current_tokens

    tokens = anyio.run(main)
    # The SDK asked for a token bound to the gateway's resource URI (RFC 8707).
    claims = json.loads(base64.urlsafe_b64decode(tokens.access_token.split(".")[1] + "=="))
    assert claims["aud"] == stack.jira


def pkce_provider(url: str, client_name: str, scope: str | None = None) -> tuple[OAuthClientProvider, dict]:
    """The SDK's authorization-code provider with dynamic registration and PKCE, driving the
    (auto-approving) authorization endpoint itself; `captured` gets the redirect's parameters."""
    redirect_uri = "http://127.0.0.1:9/callback"
    captured: dict = {}

    async def redirect_handler(authorization_url: str) -> None:
        query = parse_qs(urlparse(authorization_url).query)
        assert query["resource"] == [url]
        assert query["code_challenge_method"] == ["S256"]
        response = httpx.get(authorization_url, follow_redirects=False)
        assert response.status_code == 302, response.text
        captured.update({k: v[0] for k, v in parse_qs(urlparse(response.headers["location"]).query).items()})

    async def callback_handler() -> AuthorizationCodeResult:
        return AuthorizationCodeResult(code=captured["code"], state=captured.get("state"), iss=captured.get("iss"))

    metadata = OAuthClientMetadata(client_name=client_name, redirect_uris=[redirect_uri], grant_types=["authorization_code", "refresh_token"],
                                   response_types=["code"], scope=scope, token_endpoint_auth_method="client_secret_post")
    return OAuthClientProvider(url, metadata, MemoryStorage(), redirect_handler=redirect_handler, callback_handler=callback_handler), captured


def test_sdk_authorization_code_with_pkce_and_dynamic_registration(stack):
    auth, captured = pkce_provider(stack.jira, "interop-pkce", scope="jira:read")

    async def main():
        async with httpx2.AsyncClient(auth=auth) as http:
            async with streamable_http_client(stack.jira, http_client=http) as (read, write, *_):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    result = await session.call_tool("list_issues", {"project": "PKCE"})
                    assert "PKCE-1" in result.content[0].text

    anyio.run(main)
    assert "code" in captured


# --- refusals ---------------------------------------------------------------------------


def test_token_minted_for_another_resource_is_refused_and_never_forwarded(stack):
    foreign = stack.authgent_token("jira:read", resource="http://127.0.0.1:1/other/mcp")
    before = len(stack.upstream_requests())
    response = rpc(stack, stack.jira, foreign, "tools/list")
    assert response.status_code == 401
    params = challenge_params(response.headers["www-authenticate"])
    assert params["error"] == "invalid_token"
    assert params["resource_metadata"].endswith("/.well-known/oauth-protected-resource/jira/mcp")
    assert len(stack.upstream_requests()) == before


def test_token_of_another_issuer_is_refused(stack):
    # A nanoidp token that names the authgent-protected resource: right audience, wrong issuer.
    token = stack.nanoidp_token("jira:read", resource=stack.jira)
    response = rpc(stack, stack.jira, token, "tools/list")
    assert response.status_code == 401
    assert challenge_params(response.headers["www-authenticate"])["error"] == "invalid_token"


def test_tampered_token_is_refused(stack):
    token = stack.authgent_token("jira:read")
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["scope"] = "jira:read jira:write jira:admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    response = rpc(stack, stack.jira, f"{header}.{forged}.{signature}", "tools/list")
    assert response.status_code == 401


def test_missing_scope_gets_403_with_the_scope_and_a_jsonrpc_error(stack):
    token = stack.authgent_token("jira:read")
    session = initialize(stack, stack.jira, token)
    before = len(stack.upstream_requests())
    response = rpc(stack, stack.jira, token, "tools/call", {"name": "create_issue", "arguments": {"title": "x"}}, id=42, session=session)
    assert response.status_code == 403
    params = challenge_params(response.headers["www-authenticate"])
    assert params["error"] == "insufficient_scope"
    assert params["scope"] == "jira:write"
    assert params["resource_metadata"] == f"{stack.gateway}/.well-known/oauth-protected-resource/jira/mcp"
    body = response.json()
    assert body["id"] == 42 and body["error"]["data"]["scope"] == "jira:write"
    assert len(stack.upstream_requests()) == before
    # The same token may call what its scope allows.
    allowed = rpc(stack, stack.jira, token, "tools/call", {"name": "list_issues", "arguments": {}}, id=43, session=session)
    assert allowed.status_code == 200
    # With the stepped-up scope the call goes through.
    writer = stack.authgent_token("jira:read jira:write")
    session = initialize(stack, stack.jira, writer)
    stepped = rpc(stack, stack.jira, writer, "tools/call", {"name": "create_issue", "arguments": {"title": "x"}}, id=44, session=session)
    assert stepped.status_code == 200 and "created: x" in stepped.text


def test_unlisted_tool_and_method_are_denied(stack):
    token = stack.authgent_token("jira:read jira:write")
    session = initialize(stack, stack.jira, token)
    assert rpc(stack, stack.jira, token, "tools/call", {"name": "drop_database", "arguments": {}}, session=session).status_code == 403
    assert rpc(stack, stack.jira, token, "prompts/list", {}, session=session).status_code == 403


def test_bad_bodies_get_jsonrpc_errors(stack):
    token = stack.authgent_token("jira:read")
    headers = {"Authorization": f"Bearer {token}", "Accept": ACCEPT, "Content-Type": "application/json"}
    before = len(stack.upstream_requests())
    duplicate = httpx.post(stack.jira, headers=headers, content=b'{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call"}')
    assert duplicate.status_code == 400 and duplicate.json()["error"]["code"] == -32700
    batch = httpx.post(stack.jira, headers=headers, content=b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]')
    assert batch.status_code == 400 and batch.json()["error"]["code"] == -32600
    wrong_version = httpx.post(stack.jira, headers=headers, content=b'{"jsonrpc":"1.0","id":1,"method":"ping"}')
    assert wrong_version.status_code == 400
    mismatch = httpx.post(stack.jira, headers={**headers, "Mcp-Method": "ping"}, content=b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}')
    assert mismatch.status_code == 400
    origin = httpx.post(stack.jira, headers={**headers, "Origin": "http://evil.example"}, content=b'{"jsonrpc":"2.0","id":1,"method":"ping"}')
    assert origin.status_code == 403
    too_big = httpx.post(stack.jira, headers=headers, content=b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"' + b"a" * (2 * 1024 * 1024) + b'"}}')
    assert too_big.status_code == 413
    assert len(stack.upstream_requests()) == before


# --- forwarding -------------------------------------------------------------------------


def test_upstream_never_sees_an_authorization_header(stack):
    token = stack.authgent_token("jira:read")
    session = initialize(stack, stack.jira, token)
    assert rpc(stack, stack.jira, token, "tools/list", {}, session=session).status_code == 200
    requests = stack.upstream_requests()
    assert requests, "the upstream recorded nothing"
    for request in requests:
        assert "authorization" not in request["headers"], request
        assert token not in json.dumps(request)
    last = requests[-1]["headers"]
    # The gateway's own static credential replaced the client's token.
    assert last["x-api-key"] == [stack.static_key]
    assert last["x-forwarded-for"] == ["127.0.0.1"]
    assert last["x-forwarded-proto"] == ["http"]


def test_sse_events_arrive_one_by_one(stack):
    token = stack.authgent_token("jira:read")
    session = initialize(stack, stack.jira, token)
    body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "slow_report", "arguments": {"steps": 4}, "_meta": {"progressToken": "p1"}}}
    headers = {"Authorization": f"Bearer {token}", "Accept": ACCEPT, "Content-Type": "application/json",
               "Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"}
    arrivals = []
    with httpx.stream("POST", stack.jira, headers=headers, content=json.dumps(body), timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers.get("x-accel-buffering") == "no"
        for line in response.iter_lines():
            if line.startswith("data:") and line[5:].strip():
                arrivals.append((time.monotonic(), json.loads(line[5:])))
    kinds = [message.get("method", "result") for _, message in arrivals]
    assert kinds == ["notifications/progress"] * 4 + ["result"]
    # The upstream sleeps 0.3 s between events; had the gateway buffered the response,
    # everything would arrive in one burst at the end.
    assert arrivals[-1][0] - arrivals[0][0] > 0.6


def test_nanoidp_rs256_tokens_work_on_their_resource(stack):
    token = stack.nanoidp_token("jira:read")
    session = initialize(stack, stack.rsa, token)
    response = rpc(stack, stack.rsa, token, "tools/call", {"name": "list_issues", "arguments": {"project": "RSA"}}, session=session)
    assert response.status_code == 200
    assert "RSA-1" in json.dumps(sse_messages(response.text) or response.json())
    # An authgent (ES256) token is refused on the nanoidp resource.
    other = stack.authgent_token("jira:read", resource=stack.rsa)
    assert rpc(stack, stack.rsa, other, "tools/list").status_code == 401


def test_gateway_logs_decisions_but_never_tokens(stack):
    token = stack.authgent_token("jira:read")
    rpc(stack, stack.jira, token, "tools/call", {"name": "delete_issue", "arguments": {"key": "A-1"}})
    log = stack.gateway_log.read_text()
    assert "insufficient_scope" in log and "tools/call delete_issue" in log
    assert token not in log
    assert token.split(".")[2] not in log
