"""The walkthrough behind scripts/try: a legacy MCP server with no auth, mcp-bouncer in front
of it, authgent-server as the authorization server, and a client being told "401, go there",
getting a token bound to this server, being refused a tool it lacks the scope for, and being
refused with a token minted for a different server.

Every request below is real: nothing is mocked or canned.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Tests" / "Interop"))
from interop_stack import running_stack  # noqa: E402

ACCEPT = "application/json, text/event-stream"


def say(title: str) -> None:
    print(f"\n\033[1m== {title}\033[0m")


def show(response: httpx.Response, *headers: str) -> None:
    print(f"   {response.request.method} {response.request.url} -> {response.status_code} {response.reason_phrase}")
    for name in headers:
        if name in response.headers:
            print(f"   {name}: {response.headers[name]}")


def claims(token: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))


def post(url: str, token: str | None, method: str, params: dict | None = None, session: str | None = None, id: int = 1) -> httpx.Response:
    headers = {"Accept": ACCEPT, "Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if session:
        headers.update({"Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"})
    body = {"jsonrpc": "2.0", "id": id, "method": method, **({"params": params} if params is not None else {})}
    return httpx.post(url, headers=headers, content=json.dumps(body), timeout=30)


def result_text(response: httpx.Response) -> str:
    for line in response.text.splitlines():
        if line.startswith("data:") and line[5:].strip():
            message = json.loads(line[5:])
            if "result" in message:
                return message["result"]["content"][0]["text"]
    return response.text


def open_session(url: str, token: str) -> str:
    response = post(url, token, "initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "walkthrough", "version": "1"}})
    session = response.headers["mcp-session-id"]
    httpx.post(url, headers={"Authorization": f"Bearer {token}", "Accept": ACCEPT, "Content-Type": "application/json",
                             "Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"},
               content=json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
    return session


def walkthrough(stack) -> None:
    url = stack.jira
    say("1. A client calls the MCP server through mcp-bouncer without a token")
    response = post(url, None, "tools/list")
    show(response, "www-authenticate")
    print("   The challenge says where to find out how to get a token (RFC 9728) and which scope to ask for.")

    say("2. The client reads the protected resource metadata named in the challenge")
    metadata = httpx.get(f"{stack.gateway}/.well-known/oauth-protected-resource/jira/mcp")
    show(metadata)
    print("   " + json.dumps(metadata.json(), indent=2).replace("\n", "\n   "))

    say("3. It gets a token from that authorization server, with resource = the gateway's URL (RFC 8707)")
    client = stack.register_client("jira:read jira:write")
    token = stack.authgent_token("jira:read", resource=url, client=client)
    print(f"   POST {stack.authgent}/token grant_type=client_credentials scope=jira:read resource={url}")
    print(f"   token claims: aud={claims(token)['aud']} scope={claims(token)['scope']!r}")

    say("4. With that token, a tool its scope allows")
    session = open_session(url, token)
    response = post(url, token, "tools/call", {"name": "list_issues", "arguments": {"project": "OPS"}}, session, id=2)
    show(response)
    print(f"   result: {result_text(response)}")

    say("5. A tool that needs more scope: 403 with the scope to ask for (step-up)")
    response = post(url, token, "tools/call", {"name": "create_issue", "arguments": {"title": "printer on fire"}}, session, id=3)
    show(response, "www-authenticate")
    print(f"   body: {response.text}")

    say("6. The client asks for jira:write as well, and the call goes through")
    writer = stack.authgent_token("jira:read jira:write", resource=url, client=client)
    session = open_session(url, writer)
    response = post(url, writer, "tools/call", {"name": "create_issue", "arguments": {"title": "printer on fire"}}, session, id=4)
    show(response)
    print(f"   result: {result_text(response)}")

    say("7. A token minted for a different MCP server is refused (no confused deputy)")
    foreign = stack.authgent_token("jira:read jira:write", resource="https://other-server.example.com/mcp", client=client)
    print(f"   token claims: aud={claims(foreign)['aud']}")
    before = len(stack.upstream_requests())
    response = post(url, foreign, "tools/list")
    show(response, "www-authenticate")
    print(f"   requests that reached the legacy server: {len(stack.upstream_requests()) - before}")

    say("8. What the legacy server saw: no client token, ever")
    seen = stack.upstream_requests()
    carrying = [r for r in seen if "authorization" in r["headers"]]
    print(f"   {len(seen)} requests forwarded, {len(carrying)} with an Authorization header")
    last = seen[-1]["headers"]
    print(f"   last request's credential header: x-api-key={last.get('x-api-key', ['-'])[0]} (the gateway's own, from the policy)")
    print(f"   x-forwarded-for={last.get('x-forwarded-for')} x-forwarded-proto={last.get('x-forwarded-proto')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", required=True)
    parser.add_argument("--serve", action="store_true", help="keep everything running after the walkthrough, until Ctrl-C")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mcp-bouncer-try-") as work:
        print("Starting authgent-server, a legacy MCP server (MCP Python SDK, no auth) and mcp-bouncer on 127.0.0.1 ...")
        with running_stack(Path(work), args.binary) as stack:
            print(f"   gateway:  {stack.gateway}   (policy: {work}/policy.yaml)")
            print(f"   upstream: {stack.upstream}   authorization server: {stack.authgent}")
            walkthrough(stack)
            if args.serve:
                say("Still running; try it yourself, then Ctrl-C")
                print(f"   curl -si -X POST {stack.jira} -H 'Content-Type: application/json' -d '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}}'")
                print(f"   curl -s {stack.gateway}/.well-known/oauth-protected-resource/jira/mcp")
                print(f"   gateway log: {stack.gateway_log}")
                try:
                    while True:
                        time.sleep(1)
                except KeyboardInterrupt:
                    print("\nstopping")


if __name__ == "__main__":
    main()
