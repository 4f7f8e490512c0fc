"""The elicitation guard end to end: the official SDK's server asks, through `ctx.elicit`, for a
password in one tool and for a project name in another; the official SDK's client, through the
gateway, never sees the password form (the gateway declines it upstream, on the same session, and
the tool call finishes), and answers the harmless form, which goes through both ways."""

from __future__ import annotations

import time

import anyio
import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.types import ElicitResult


def test_a_password_form_never_reaches_the_client_and_a_harmless_one_does(stack):
    token = stack.authgent_token("jira:read", resource=stack.forms)
    headers = {"Authorization": f"Bearer {token}"}
    seen: list[str] = []

    async def answer(context, params):
        seen.append(params.message)
        return ElicitResult(action="accept", content={"project": "OPS"})

    async def main():
        async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
            async with streamable_http_client(stack.forms, http_client=http) as (read, write, *_):
                async with ClientSession(read, write, elicitation_callback=answer) as session:
                    await session.initialize()
                    tools = {tool.name for tool in (await session.list_tools()).tools}
                    assert tools == {"sign_in", "choose_project"}
                    signed = await session.call_tool("sign_in", {})
                    chosen = await session.call_tool("choose_project", {})
                    return signed, chosen

    before = len(stack.upstream_requests())
    signed, chosen = anyio.run(main)
    # The upstream got the gateway's decline and its tool call went on to finish.
    assert signed.content[0].text == "sign-in: decline", signed
    # The harmless form reached the client, and its answer reached the server.
    assert chosen.content[0].text == "project: OPS", chosen
    assert seen == ["Which project?"], seen

    # The decline went upstream with the gateway's credential, never a client token.
    posts = [r for r in stack.upstream_requests()[before:] if r["method"] == "POST"]
    assert posts and all(r["headers"].get("x-api-key") == [stack.static_key] for r in posts)
    assert all("authorization" not in r["headers"] for r in posts)

    deadline = time.monotonic() + 10
    while len(stack.audit_records("server_request")) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    records = stack.audit_records("server_request")
    blocked = [r for r in records if r["decision"] == "blocked"]
    passed = [r for r in records if r["decision"] == "passed"]
    assert len(blocked) == 1 and blocked[0]["reason"] == "credential_field", records
    assert "password" in blocked[0]["schema"]["properties"], blocked[0]
    assert blocked[0]["method"] == "elicitation/create" and blocked[0]["form"] == "sse"
    assert len(passed) == 1 and "project" in passed[0]["schema"]["properties"]
    assert "OPS" not in stack.audit.read_text().split('"server_request"', 1)[1], "the answer is never in the trail"
    log = stack.gateway_log.read_text()
    assert "server-to-client request blocked" in log
