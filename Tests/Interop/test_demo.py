"""The MCP Python SDK's OAuth client, unchanged, against `mcp-bouncer demo`: discovery from the
401, dynamic registration, PKCE, `resource`, and a tool call through the gateway."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import anyio
import httpx
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from interop_stack import HERE, Process, free_port
from test_gateway import pkce_provider


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    binary = os.environ.get("BOUNCER_BIN") or str(HERE.parent.parent / ".build" / "debug" / "mcp-bouncer")
    port = free_port()
    process = Process("demo", [binary, "demo", "--port", str(port), "--log-level", "info"], tmp_path_factory.mktemp("demo"))
    try:
        process.wait_for(f"http://127.0.0.1:{port}/healthz")
        yield {"url": f"http://127.0.0.1:{port}/mcp", "process": process}
    finally:
        process.stop()


def test_sdk_oauth_client_against_the_demo(demo):
    url = demo["url"]
    auth, captured = pkce_provider(url, "sdk-against-demo")

    async def main():
        async with httpx2.AsyncClient(auth=auth) as http:
            async with streamable_http_client(url, http_client=http) as (read, write, *_):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    tools = await session.list_tools()
                    # The SDK asked for the scopes the challenge named (jira:read): the list is
                    # filtered to them, create_issue (jira:write) hidden.
                    names = {tool.name for tool in tools.tools}
                    assert {"list_issues", "slow_report"} <= names and "create_issue" not in names
                    result = await session.call_tool("list_issues", {"project": "SDK"})
                    assert "SDK-1" in result.content[0].text
                    progress = []

                    async def on_progress(value, total, message):
                        progress.append(value)

                    result = await session.call_tool("slow_report", {"steps": 2}, progress_callback=on_progress)
                    assert result.content[0].text == "report done after 2 steps"
                    assert progress == [1, 2]

    anyio.run(main)
    assert "code" in captured


def test_demo_scenario_command_passes():
    binary = os.environ.get("BOUNCER_BIN") or str(HERE.parent.parent / ".build" / "debug" / "mcp-bouncer")
    result = subprocess.run([binary, "demo", "--scenario"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("✔") == 11
    assert "All 11 steps behaved as expected." in result.stdout
    assert "hidden: create_issue" in result.stdout


def test_run_refuses_the_development_server(demo, tmp_path):
    # A policy pointing `run` at the demo's development authorization server.
    log = demo["process"].log_path.read_text()
    issuer = next(line.split()[-1] for line in log.splitlines() if "authorization server:" in line)
    port = free_port()
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"""listen: 127.0.0.1:{port}
public_url: http://127.0.0.1:{port}
authorization_servers:
  dev:
    issuer: {issuer}
resources:
  - path: /mcp
    authorization_server: dev
    upstream: http://127.0.0.1:1/mcp
    methods: {{ initialize: [] }}
""")
    binary = os.environ.get("BOUNCER_BIN") or str(HERE.parent.parent / ".build" / "debug" / "mcp-bouncer")
    gateway = Process("refusing-gateway", [binary, "run", "--config", str(policy)], tmp_path)
    try:
        gateway.wait_for(f"http://127.0.0.1:{port}/healthz")
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 503
        # Well-formed, so verifying it needs the (refused) key set.
        def b64(data: dict) -> str:
            return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
        token = f"{b64({'alg': 'ES256', 'kid': 'dev-es256'})}.{b64({'iss': issuer, 'aud': f'http://127.0.0.1:{port}/mcp'})}.AAAA"
        response = httpx.post(f"http://127.0.0.1:{port}/mcp", headers={"Authorization": f"Bearer {token}"}, json={"jsonrpc": "2.0", "id": 1, "method": "initialize"})
        assert response.status_code == 503
        assert "only `mcp-bouncer demo` trusts" in gateway.log_path.read_text()
    finally:
        gateway.stop()
