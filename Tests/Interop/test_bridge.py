"""The protocol bridge end to end, with real parts only: a genuinely legacy upstream (the last 1.x
release of the MCP Python SDK, from .venv-legacy: 2025-11-25, sessions, elicitation on the POST's
SSE stream), the MCP Python SDK 2.x client pinned to 2026-07-28 (no fallback), authgent tokens,
and mcp-bouncer in between: once with the bridge on, once with it off."""

from __future__ import annotations

import json
import time
from pathlib import Path

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import ElicitResult

from interop_stack import HERE, Process, free_port

LEGACY_PYTHON = HERE.parent.parent / ".venv-legacy" / "bin" / "python"

POLICY = """
listen: 127.0.0.1:{port}
public_url: http://127.0.0.1:{port}
audit:
  file: {audit}
bridge:
  enabled: {enabled}
  replica: {replica}
  keepalive_seconds: 1
authorization_servers:
  authgent:
    issuer: {authgent}
    algorithms: [ES256]
resources:
  - path: /v1/mcp
    name: Legacy Jira on the MCP Python SDK 1.x
    authorization_server: authgent
    scopes_supported: [jira:read, jira:write]
    upstream: {upstream}/mcp
    client_responses: [jira:read]
    elicitation:
      url_allowed_origins: ["https://auth.example.com"]
    methods:
      initialize: []
      server/discover: []
      notifications/*: []
      ping: []
      tools/list: [jira:read]
      tools/call:
        list_issues: [jira:read]
        create_issue: [jira:write]
        choose_project: [jira:read]
        two_questions: [jira:read]
        sign_in: [jira:read]
        chatty: [jira:read]
        connect_drive: [jira:read]
        slow: [jira:read]
        add_tool: [jira:read]
        touch_readme: [jira:read]
        "added_*": [jira:read]
      subscriptions/listen: []
      prompts/list: [jira:read]
      prompts/get:
        triage: [jira:read]
      resources/list: [jira:read]
      resources/read:
        "docs://*": [jira:read]
"""


class Bridged:
    def __init__(self, url: str, record: Path, audit: Path, log: Path, upstream: str):
        self.url = url
        self.upstream = upstream
        self.record = record
        self.audit = audit
        self.log = log

    def upstream_requests(self) -> list[dict]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines() if line.strip()]

    def audit_records(self, event: str) -> list[dict]:
        if not self.audit.exists():
            return []
        return [r for r in (json.loads(line) for line in self.audit.read_text().splitlines() if line.strip()) if r.get("event") == event]


@pytest.fixture(scope="module")
def bridged(stack, bouncer_bin, tmp_path_factory):
    """The 1.x upstream, and two gateways in front of it: `on` (bridge on) and `off`."""
    if not LEGACY_PYTHON.exists():
        pytest.fail(f"{LEGACY_PYTHON} missing: scripts/test installs .venv-legacy (Tests/Interop/requirements-legacy.txt)")
    work = tmp_path_factory.mktemp("bridge")
    processes = []
    try:
        upstream_port = free_port()
        upstream = f"http://127.0.0.1:{upstream_port}"
        record = work / "v1-upstream.jsonl"
        up = Process("v1-upstream", [str(LEGACY_PYTHON), str(HERE / "servers" / "legacy_v1_upstream.py"), "--port", str(upstream_port), "--record", str(record)], work)
        processes.append(up)
        up.wait_for(f"{upstream}/not-served")
        gateways = {}
        for name, enabled in (("on", "true"), ("off", "false")):
            port = free_port()
            policy = work / f"policy-{name}.yaml"
            audit = work / f"audit-{name}.jsonl"
            policy.write_text(POLICY.format(port=port, audit=audit, enabled=enabled, replica=f"replica-{name}", authgent=stack.authgent, upstream=upstream))
            gw = Process(f"bridge-{name}", [bouncer_bin, "run", "--config", str(policy), "--log-level", "debug"], work)
            processes.append(gw)
            gw.wait_for(f"http://127.0.0.1:{port}/healthz")
            deadline = time.monotonic() + 30
            while "legacy" not in httpx.get(f"http://127.0.0.1:{port}/readyz").text:
                assert time.monotonic() < deadline, gw.log_path.read_text()
                time.sleep(0.2)
            gateways[name] = Bridged(f"http://127.0.0.1:{port}/v1/mcp", record, audit, gw.log_path, upstream)
        yield gateways
    finally:
        for process in reversed(processes):
            process.stop()


def client(url: str, token: str, mode: str = "2026-07-28", **callbacks) -> Client:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
    return Client(streamable_http_client(url, http_client=http), mode=mode, **callbacks)


def test_a_modern_client_lists_calls_gets_and_reads_through_the_bridge(stack, bridged):
    gateway = bridged["on"]
    token = stack.authgent_token("jira:read", resource=gateway.url)
    before = len(gateway.upstream_requests())

    async def main():
        async with client(gateway.url, token) as session:
            tools = {tool.name for tool in (await session.list_tools()).tools}
            called = await session.call_tool("list_issues", {"project": "OPS"})
            prompt = await session.get_prompt("triage", {"issue": "OPS-1"})
            read = await session.read_resource("docs://readme")
            return session.session.protocol_version, tools, called, prompt, read

    version, tools, called, prompt, read = anyio.run(main)
    assert version == "2026-07-28"
    # Filtered to the token, as for a legacy client: create_issue needs jira:write.
    assert {"list_issues", "choose_project"} <= tools and "create_issue" not in tools, tools
    assert called.content[0].text.startswith("OPS-1"), called
    assert "Triage issue OPS-1" in prompt.messages[0].content.text, prompt
    assert read.contents[0].text == "This is the legacy Jira MCP server.", read

    upstream = gateway.upstream_requests()[before:]
    # The gateway's own server/discover (it asks again when the bridge opens a session, at most
    # once a minute: the upstream may have been upgraded) aside.
    posts = [r for r in upstream if r["method"] == "POST" and r["body"].get("method") != "server/discover"]
    methods = [r["body"].get("method") for r in posts if isinstance(r["body"], dict)]
    # One session, opened the legacy way, then the client's requests on it.
    assert methods[:2] == ["initialize", "notifications/initialized"], methods
    assert {"tools/list", "tools/call", "prompts/get", "resources/read"} <= set(methods), methods
    for r in posts[1:]:
        assert r["headers"]["mcp-protocol-version"] == ["2025-11-25"], r
        assert len(r["headers"].get("mcp-session-id", [])) == 1, r
        assert "authorization" not in r["headers"], "the client's token never reaches the upstream"
        meta = (r["body"].get("params") or {}).get("_meta") or {}
        assert not [key for key in meta if key.startswith("io.modelcontextprotocol/")], r["body"]
    assert posts[0]["body"]["params"]["capabilities"] == {}, "no capability the client did not declare"


def test_server_discover_is_answered_from_the_upstreams_initialize(stack, bridged):
    gateway = bridged["on"]
    token = stack.authgent_token("jira:read", resource=gateway.url)
    response = httpx.post(gateway.url, headers=modern_headers(token, "server/discover"), json=modern_request("server/discover", {}))
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert result["supportedVersions"] == ["2026-07-28", "2025-11-25"], result
    assert set(result["capabilities"]) == {"tools", "prompts", "resources"}, result
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "legacy-v1-jira"
    assert result["instructions"] == "A Jira of the old days."
    assert result["resultType"] == "complete" and "ttlMs" in result and result["cacheScope"] == "private"

    listed = httpx.post(gateway.url, headers=modern_headers(token, "tools/list"), json=modern_request("tools/list", {}))
    assert listed.status_code == 200, listed.text
    tools = listed.json()["result"]
    assert tools["resultType"] == "complete" and tools["ttlMs"] == 0 and tools["cacheScope"] == "private", tools


def modern_headers(token: str, method: str, name: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {token}", "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": method,
               "Accept": "application/json, text/event-stream"}
    if name:
        headers["Mcp-Name"] = name
    return headers


def modern_request(method: str, params: dict, capabilities: dict | None = None, id: int = 1) -> dict:
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": capabilities or {}}
    return {"jsonrpc": "2.0", "id": id, "method": method, "params": {**params, "_meta": meta}}


def test_an_elicitation_becomes_an_input_required_result_and_the_answer_goes_upstream(stack, bridged):
    gateway = bridged["on"]
    token = stack.authgent_token("jira:read", resource=gateway.url)
    asked: list[str] = []

    async def answer(context, params):
        asked.append(params.message)
        return ElicitResult(action="accept", content={"project": f"P{len(asked)}"})

    async def main():
        async with client(gateway.url, token, elicitation_callback=answer) as session:
            one = await session.call_tool("choose_project", {})
            two = await session.call_tool("two_questions", {})
            signed = await session.call_tool("sign_in", {})
            return one, two, signed

    one, two, signed = anyio.run(main)
    assert one.content[0].text == "project: P1", one
    assert two.content[0].text == "projects: P2, P3", two
    assert asked == ["Which project?", "First project?", "Second project?"], asked
    # A credential form is declined upstream by the gateway: the client is never asked.
    assert signed.content[0].text == "sign-in: decline", signed
    deadline = time.monotonic() + 10
    while [r["action"] for r in gateway.audit_records("bridge")].count("resumed") < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    actions = [r["action"] for r in gateway.audit_records("bridge")]
    assert actions.count("parked") == 3 and actions.count("resumed") == 3, actions
    requests = [r for r in gateway.audit_records("request") if r.get("bridge") == "parked"]
    assert requests and all(r["upstream_protocol_version"] == "2025-11-25" and r["protocol_version"] == "2026-07-28" for r in requests)


def test_a_tampered_foreign_or_replayed_request_state_reaches_nothing_upstream(stack, bridged):
    gateway = bridged["on"]
    token = stack.authgent_token("jira:read", resource=gateway.url)
    other = stack.authgent_token("jira:read", resource=gateway.url)
    capabilities = {"elicitation": {"form": {}}}
    headers = modern_headers(token, "tools/call", "choose_project")
    first = httpx.post(gateway.url, headers=headers, json=modern_request("tools/call", {"name": "choose_project", "arguments": {}}, capabilities), timeout=30)
    assert first.status_code == 200, first.text
    result = first.json()["result"]
    assert result["resultType"] == "input_required", result
    state = result["requestState"]
    (key, asked), = result["inputRequests"].items()
    assert asked["method"] == "elicitation/create" and asked["params"]["message"] == "Which project?"

    def retry(state_value, with_token=token, arguments=None):
        params = {"name": "choose_project", "arguments": arguments or {}, "requestState": state_value,
                  "inputResponses": {key: {"action": "accept", "content": {"project": "ZED"}}}}
        return httpx.post(gateway.url, headers=modern_headers(with_token, "tools/call", "choose_project"),
                          json=modern_request("tools/call", params, capabilities, id=2), timeout=30)

    before = len(gateway.upstream_requests())
    tampered = state[:-3] + ("AAA" if not state.endswith("AAA") else "BBB")
    for response in (retry(tampered), retry(state, with_token=other), retry(state, arguments={"other": 1})):
        assert response.status_code == 400 and response.json()["error"]["code"] == -32602, response.text
    assert len(gateway.upstream_requests()) == before, "nothing reached the upstream"

    done = retry(state)
    assert done.status_code == 200, done.text
    assert done.json()["result"]["content"][0]["text"] == "project: ZED"
    assert done.json()["result"]["resultType"] == "complete"
    replayed = retry(state)
    assert replayed.status_code == 400 and "used already" in replayed.json()["error"]["message"], replayed.text


def test_a_client_without_the_capability_gets_32021(stack, bridged):
    gateway = bridged["on"]
    token = stack.authgent_token("jira:read", resource=gateway.url)
    response = httpx.post(gateway.url, headers=modern_headers(token, "tools/call", "choose_project"),
                          json=modern_request("tools/call", {"name": "choose_project", "arguments": {}}), timeout=30)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == -32021 and error["data"] == {"requiredCapabilities": {"elicitation": {}}}, error


def test_the_2026_07_28_header_rules_hold_for_bridged_requests(stack, bridged):
    gateway = bridged["on"]
    token = stack.authgent_token("jira:read", resource=gateway.url)
    body = modern_request("tools/call", {"name": "list_issues", "arguments": {}})
    cases = [
        ({"Mcp-Method": None}, body, -32020),                                  # Mcp-Method missing
        ({"Mcp-Name": None}, body, -32020),                                    # Mcp-Name missing
        ({"Mcp-Name": "create_issue"}, body, -32020),                          # Mcp-Name not the body's
        ({}, {**body, "params": {"name": "list_issues", "arguments": {}}}, -32602),  # no _meta envelope
    ]
    for changes, payload, code in cases:
        headers = modern_headers(token, "tools/call", "list_issues")
        for name, value in changes.items():
            if value is None:
                headers.pop(name)
            else:
                headers[name] = value
        response = httpx.post(gateway.url, headers=headers, json=payload)
        assert response.status_code == 400 and response.json()["error"]["code"] == code, (changes, response.text)
    version = modern_request("tools/call", {"name": "list_issues", "arguments": {}})
    version["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = "2025-11-25"
    response = httpx.post(gateway.url, headers=modern_headers(token, "tools/call", "list_issues"), json=version)
    assert response.status_code == 400 and response.json()["error"]["code"] == -32020, response.text


def test_two_subjects_never_share_an_upstream_session(stack, bridged):
    gateway = bridged["on"]
    alice = stack.authgent_token("jira:read", resource=gateway.url)
    bob = stack.authgent_token("jira:read", resource=gateway.url)
    before = len(gateway.upstream_requests())

    async def call(token, caller):
        async with client(gateway.url, token) as session:
            for _ in range(2):
                await session.call_tool("list_issues", {"caller": caller})

    anyio.run(call, alice, "alice")
    anyio.run(call, bob, "bob")
    sessions: dict[str, set[str]] = {}
    for r in gateway.upstream_requests()[before:]:
        body = r["body"] if isinstance(r["body"], dict) else {}
        caller = ((body.get("params") or {}).get("arguments") or {}).get("caller")
        if caller:
            sessions.setdefault(r["headers"]["mcp-session-id"][0], set()).add(caller)
    assert len(sessions) == 2 and all(len(callers) == 1 for callers in sessions.values()), sessions


def test_legacy_and_auto_clients_work_beside_modern_ones(stack, bridged):
    gateway = bridged["on"]
    token = stack.authgent_token("jira:read", resource=gateway.url)

    async def main(mode):
        async with client(gateway.url, token, mode=mode) as session:
            called = await session.call_tool("list_issues", {})
            return session.session.protocol_version, called.content[0].text

    legacy = anyio.run(main, "legacy")
    auto = anyio.run(main, "auto")
    assert legacy[0] == "2025-11-25" and legacy[1].startswith("OPS-1")
    # auto asks server/discover first: the bridge answers it, so the client stays modern.
    assert auto[0] == "2026-07-28" and auto[1].startswith("OPS-1")


def test_with_the_bridge_off_an_auto_client_falls_back_to_initialize(stack, bridged):
    gateway = bridged["off"]
    token = stack.authgent_token("jira:read", resource=gateway.url)
    refused = httpx.post(gateway.url, headers=modern_headers(token, "server/discover"), json=modern_request("server/discover", {}))
    assert refused.status_code == 400 and refused.json()["error"]["code"] == -32601, refused.text

    async def main():
        async with client(gateway.url, token, mode="auto") as session:
            called = await session.call_tool("list_issues", {})
            return session.session.protocol_version, called.content[0].text

    version, text = anyio.run(main)
    assert version == "2025-11-25" and text.startswith("OPS-1")


def test_a_url_elicitation_error_becomes_an_input_required_result(stack, bridged):
    gateway = bridged["on"]
    token = stack.authgent_token("jira:read", resource=gateway.url)
    opened: list[str] = []

    async def answer(context, params):
        opened.append(params.url)
        return ElicitResult(action="accept")

    async def main():
        async with client(gateway.url, token, elicitation_callback=answer) as session:
            return await session.call_tool("connect_drive", {"account": "ann"})

    result = anyio.run(main)
    assert result.content[0].text == "drive connected: ann", result
    assert opened == ["https://auth.example.com/connect?account=ann"], opened

    # An origin not on the allow-list never reaches the client.
    capabilities = {"elicitation": {"url": {}}}
    refused = httpx.post(gateway.url, headers=modern_headers(token, "tools/call", "connect_drive"), timeout=30,
                         json=modern_request("tools/call", {"name": "connect_drive", "arguments": {"account": "bo", "url": "https://evil.example.net/x"}}, capabilities))
    assert refused.status_code == 200 and refused.json()["error"]["code"] == -32003, refused.text
    assert "url_origin_not_allowed" in refused.json()["error"]["message"]


HAPROXY = """
global
  maxconn 2000
defaults
  mode http
  option forwardfor
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend mcp
  bind 127.0.0.1:{port}
  use_backend by_token if {{ req.hdr(MCP-Protocol-Version) -m str 2026-07-28 }}
  default_backend round_robin
backend round_robin
  balance roundrobin
{servers}
backend by_token
  balance hdr(Authorization)
  hash-type consistent
{servers}
"""


def test_two_replicas_behind_haproxy_serve_a_parked_call_and_its_retry(stack, bridged, bouncer_bin, tmp_path):
    """Two bridge replicas (the same session keys, their own names) behind HAProxy balancing
    2026-07-28 traffic by the Authorization header, as deploy/haproxy.cfg does: a modern client's
    elicitation round trips meet the replica that parked them, for several users at once; a
    retry sent to the other replica is told where its call is."""
    import shutil
    import subprocess
    if shutil.which("haproxy") is None:
        pytest.fail("haproxy comes from scripts/test")
    deploy = (HERE.parent.parent / "deploy" / "haproxy.cfg").read_text()
    assert "balance hdr(Authorization)" in deploy and "req.hdr(MCP-Protocol-Version) -m str 2026-07-28" in deploy
    key = tmp_path / "session.key"
    key.write_text(subprocess.run([bouncer_bin, "sessions", "keygen"], check=True, capture_output=True, text=True).stdout)
    balancer_port = free_port()
    public = f"http://127.0.0.1:{balancer_port}"
    processes = []
    try:
        ports = []
        for name in ("east", "west"):
            port = free_port()
            policy = tmp_path / f"{name}.yaml"
            text = POLICY.format(port=port, audit=tmp_path / f"{name}.jsonl", enabled="true", replica=name, authgent=stack.authgent, upstream=bridged["on"].upstream)
            text = text.replace(f"public_url: http://127.0.0.1:{port}", f"public_url: {public}")
            text += f"sessions:\n  keys:\n    - {{ id: k1, secret: \"${{file:{key}}}\" }}\ntrusted_proxies: [127.0.0.1/32]\n"
            policy.write_text(text)
            gw = Process(f"replica-{name}", [bouncer_bin, "run", "--config", str(policy)], tmp_path)
            processes.append(gw)
            gw.wait_for(f"http://127.0.0.1:{port}/healthz")
            ports.append(port)
        config = tmp_path / "haproxy.cfg"
        servers = "\n".join(f"  server r{i} 127.0.0.1:{port}" for i, port in enumerate(ports))
        config.write_text(HAPROXY.format(port=balancer_port, servers=servers))
        balancer = Process("haproxy", ["haproxy", "-f", str(config), "-db"], tmp_path)
        processes.append(balancer)
        balancer.wait_for(f"{public}/healthz")
        url = f"{public}/v1/mcp"
        for port in ports:
            deadline = time.monotonic() + 30
            while "legacy" not in httpx.get(f"http://127.0.0.1:{port}/readyz").text:
                assert time.monotonic() < deadline
                time.sleep(0.2)

        tokens = [stack.authgent_token("jira:read", resource=url) for _ in range(4)]

        async def answer(context, params):
            return ElicitResult(action="accept", content={"project": "HA"})

        async def one(token):
            async with client(url, token, elicitation_callback=answer) as session:
                return (await session.call_tool("two_questions", {})).content[0].text

        async def main():
            results = []
            async with anyio.create_task_group() as group:
                for token in tokens:
                    group.start_soon(lambda t=token: _collect(results, one(t)))
            return results

        results = anyio.run(main)
        assert results == ["projects: HA, HA"] * 4, results
        # The audit trail is written after the answer: wait for the last records to land.
        def parked() -> dict:
            return {name: sum(1 for line in (tmp_path / f"{name}.jsonl").read_text().splitlines() if '"action":"parked"' in line) for name in ("east", "west")}
        deadline = time.monotonic() + 10
        while sum(parked().values()) < 8 and time.monotonic() < deadline:
            time.sleep(0.1)
        parked_on = parked()
        assert sum(parked_on.values()) == 8, parked_on

        # A retry that reaches the other replica is told which replica holds its call.
        capabilities = {"elicitation": {}}
        token = tokens[0]
        first = httpx.post(url, headers=modern_headers(token, "tools/call", "choose_project"), timeout=30,
                           json=modern_request("tools/call", {"name": "choose_project", "arguments": {}}, capabilities))
        state = first.json()["result"]["requestState"]
        params = {"name": "choose_project", "arguments": {}, "requestState": state, "inputResponses": {"upstream": {"action": "accept", "content": {"project": "X"}}}}
        answers = [httpx.post(f"http://127.0.0.1:{port}/v1/mcp", headers=modern_headers(token, "tools/call", "choose_project"), timeout=30,
                              json=modern_request("tools/call", params, capabilities, id=2)) for port in ports]
        wrong = [a for a in answers if a.status_code == 400]
        right = [a for a in answers if a.status_code == 200]
        assert len(wrong) == 1 and len(right) == 1, [a.text for a in answers]
        assert "is held by replica" in wrong[0].json()["error"]["message"], wrong[0].text
        assert right[0].json()["result"]["content"][0]["text"] == "project: X"
    finally:
        for process in reversed(processes):
            process.stop()


async def _collect(results: list, coroutine) -> None:
    results.append(await coroutine)


def test_progress_and_asked_for_log_messages_reach_the_client_and_others_do_not(stack, bridged):
    gateway = bridged["on"]
    token = stack.authgent_token("jira:read", resource=gateway.url)

    async def main(level):
        logged, progressed = [], []

        async def on_log(params):
            logged.append(params.data)

        async def on_progress(progress, total, message):
            progressed.append((progress, total, message))

        async with client(gateway.url, token, logging_callback=on_log, log_level=level) as session:
            result = await session.call_tool("chatty", {}, progress_callback=on_progress)
        return result.content[0].text, logged, progressed

    text, logged, progressed = anyio.run(main, "info")
    assert text == "chatty done" and logged == ["working on it"], logged
    assert progressed == [(1.0, 2.0, "half way")], progressed
    text, logged, _ = anyio.run(main, "error")
    assert text == "chatty done" and logged == [], "below the level asked for"
    text, logged, _ = anyio.run(main, None)
    assert text == "chatty done" and logged == [], "no level asked for: no log messages"


def test_a_client_that_closes_its_request_cancels_the_upstream_call(stack, bridged):
    gateway = bridged["on"]
    token = stack.authgent_token("jira:read", resource=gateway.url)
    before = len(gateway.upstream_requests())
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(gateway.url, headers=modern_headers(token, "tools/call", "slow"), timeout=1.5,
                   json=modern_request("tools/call", {"name": "slow", "arguments": {"seconds": 5}}))
    deadline = time.monotonic() + 10
    cancelled = []
    while not cancelled and time.monotonic() < deadline:
        bodies = [r["body"] for r in gateway.upstream_requests()[before:] if isinstance(r["body"], dict)]
        call = next((b for b in bodies if b.get("method") == "tools/call"), None)
        cancelled = [b for b in bodies if b.get("method") == "notifications/cancelled" and call and b["params"]["requestId"] == call["id"]]
        time.sleep(0.1)
    assert cancelled, gateway.upstream_requests()[before:]


def test_a_subscription_relays_list_changes_and_resource_updates_and_unsubscribes_when_closed(stack, bridged):
    gateway = bridged["on"]
    token = stack.authgent_token("jira:read", resource=gateway.url)
    before = len(gateway.upstream_requests())

    async def main():
        events = []
        async with client(gateway.url, token) as session:
            async with session.listen(tools_list_changed=True, prompts_list_changed=True, resource_subscriptions=["docs://readme"]) as subscription:
                honoured = subscription.honored
                # The legacy transport registers the session's stream a moment after answering
                # the GET: a change made before then is told to nobody. Change until one is heard.
                iterator = subscription.__aiter__()
                for attempt in range(10):
                    await session.call_tool("add_tool", {"name": f"added_{attempt}"})
                    with anyio.move_on_after(1):
                        events.append(await iterator.__anext__())
                        break
                await session.call_tool("touch_readme", {})
                with anyio.fail_after(10):
                    events.append(await iterator.__anext__())
                await anyio.sleep(1.5)  # a keep-alive goes by
            tools = {tool.name for tool in (await session.list_tools()).tools}
        return honoured, events, tools

    honoured, events, tools = anyio.run(main)
    # Prompts never announced listChanged: not honoured.
    assert honoured.tools_list_changed and not honoured.prompts_list_changed, honoured
    assert honoured.resource_subscriptions == ["docs://readme"], honoured
    assert [type(event).__name__ for event in events] == ["ToolsListChanged", "ResourceUpdated"], events
    assert events[1].uri == "docs://readme"
    assert "added_0" in tools
    deadline = time.monotonic() + 10
    methods = []
    while "resources/unsubscribe" not in methods and time.monotonic() < deadline:
        upstream = gateway.upstream_requests()[before:]
        methods = [r["body"].get("method") for r in upstream if isinstance(r["body"], dict)]
        time.sleep(0.1)
    assert "resources/subscribe" in methods and "resources/unsubscribe" in methods, methods
    gets = [r for r in gateway.upstream_requests()[before:] if r["method"] == "GET"]
    assert gets and all(len(r["headers"].get("mcp-session-id", [])) == 1 and "authorization" not in r["headers"] for r in gets)
    actions = [r["action"] for r in gateway.audit_records("bridge")]
    assert "listening" in actions


def test_a_raw_subscription_stream_is_tagged_and_kept_alive(stack, bridged):
    gateway = bridged["on"]
    token = stack.authgent_token("jira:read", resource=gateway.url)
    body = modern_request("subscriptions/listen", {"notifications": {"toolsListChanged": True}}, id="listen-1")
    lines = []
    with httpx.stream("POST", gateway.url, headers=modern_headers(token, "subscriptions/listen"), json=body, timeout=10) as response:
        assert response.status_code == 200 and response.headers["content-type"] == "text/event-stream"
        started = time.monotonic()
        for line in response.iter_lines():
            lines.append(line)
            if line.startswith(":") or time.monotonic() - started > 5:
                break
    ack = json.loads(next(line for line in lines if line.startswith("data:"))[5:])
    assert ack["method"] == "notifications/subscriptions/acknowledged", ack
    assert ack["params"]["notifications"] == {"toolsListChanged": True}
    assert ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"] == "listen-1"
    assert any(line.startswith(": keep-alive") for line in lines), lines
    bad = httpx.post(gateway.url, headers=modern_headers(token, "subscriptions/listen"),
                     json=modern_request("subscriptions/listen", {"notifications": {"toolsListChanged": "yes"}}))
    assert bad.status_code == 400 and bad.json()["error"]["code"] == -32602, bad.text
