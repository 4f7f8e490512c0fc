"""Tool pinning end to end: `mcp-bouncer pin` against the official SDK's server, the same server
restarted with one tool's description changed (a rug pull), and the official SDK client
through the gateway: the changed tool is hidden from its list and its call refused."""

from __future__ import annotations

import subprocess
import time

import anyio
import httpx2
import yaml
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client


def pins_of(path) -> dict[str, str]:
    document = yaml.safe_load(path.read_text())
    return {entry["name"]: entry["sha256"] for entry in document["tools"]}


def test_pin_lists_every_tool_of_the_server_and_round_trips(stack, bouncer_bin, tmp_path):
    pinned = pins_of(stack.pins)
    assert {"list_issues", "create_issue", "delete_issue", "slow_report"} <= set(pinned)
    assert all(len(digest) == 64 for digest in pinned.values())
    # Pinning the same server again gives the same file; pinning the changed server differs
    # in the changed tool only.
    again = tmp_path / "again.yaml"
    subprocess.run([bouncer_bin, "pin", "--upstream", f"{stack.upstream}/mcp", "--out", str(again)], check=True, capture_output=True, timeout=60)
    assert pins_of(again) == pinned
    changed = subprocess.run([bouncer_bin, "pin", "--upstream", f"{stack.rug_upstream}/mcp"], check=True, capture_output=True, text=True, timeout=60)
    now = {entry["name"]: entry["sha256"] for entry in yaml.safe_load(changed.stdout)["tools"]}
    assert {name for name in now if now[name] != pinned.get(name)} == {"delete_issue"}
    # An unreachable server is a clear error, not a file.
    failed = subprocess.run([bouncer_bin, "pin", "--upstream", "http://127.0.0.1:9/mcp"], capture_output=True, text=True, timeout=60)
    assert failed.returncode != 0 and "cannot list the tools" in failed.stderr


def test_a_changed_tool_is_hidden_and_its_call_refused(stack):
    token = stack.authgent_token("jira:read", resource=stack.pinned)
    headers = {"Authorization": f"Bearer {token}"}

    async def main():
        async with httpx2.AsyncClient(headers=headers) as http:
            async with streamable_http_client(stack.pinned, http_client=http) as (read, write, *_):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    for _ in range(2):
                        tools = await session.list_tools()
                        # delete_issue changed since it was pinned: hidden although the token
                        # may call it under the policy. create_issue and slow_report: filtered
                        # to the token.
                        assert {tool.name for tool in tools.tools} == {"list_issues"}
                    result = await session.call_tool("list_issues", {"project": "PIN"})
                    assert "PIN-1" in result.content[0].text
                    refused = await session.call_tool("delete_issue", {"key": "OPS-1"})
                    return refused

    refused = None
    try:
        refused = anyio.run(main)
    except Exception as error:  # the SDK may raise the JSON-RPC error instead of returning it
        assert "changed since it was approved" in repr(error) and "-32003" in repr(error), error
    if refused is not None:
        assert refused.is_error and "changed since it was approved" in refused.content[0].text

    # One warning for the tool and its new definition, however often it was listed.
    lines = [line for line in stack.gateway_log.read_text().splitlines()
             if "tool definition changed since it was approved" in line and "resource=/pinned/mcp" in line]
    assert len(lines) == 1, lines


def test_under_alert_a_changed_tool_passes_and_is_audited(stack):
    token = stack.authgent_token("jira:read", resource=stack.alert)
    headers = {"Authorization": f"Bearer {token}"}

    async def main():
        async with httpx2.AsyncClient(headers=headers) as http:
            async with streamable_http_client(stack.alert, http_client=http) as (read, write, *_):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    tools = await session.list_tools()
                    names = {tool.name for tool in tools.tools}
                    described = {tool.name: tool.description for tool in tools.tools}
                    result = await session.call_tool("delete_issue", {"key": "OPS-1"})
                    return names, described, result

    names, described, result = anyio.run(main)
    # Only reported: the changed tool stays listed (filtered to the token) and callable.
    assert names == {"list_issues", "delete_issue"}
    assert "id_rsa" in described["delete_issue"]
    assert not result.is_error and "deleted: OPS-1" in result.content[0].text
    deadline = time.monotonic() + 10
    records = []
    while not records and time.monotonic() < deadline:  # the trail is written in 20 ms batches
        records = [r for r in stack.audit_records("tool_definition_changed") if r["resource"] == "/alert/mcp"]
        time.sleep(0.05)
    assert records and records[0]["tool"] == "delete_issue" and records[0]["action"] == "alert", records
    assert records[0]["pinned_sha256"] == pins_of(stack.pins)["delete_issue"] != records[0]["sha256"]
