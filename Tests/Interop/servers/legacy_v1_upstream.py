"""A genuinely legacy MCP server: the last 1.x release of the official MCP Python SDK
(pinned in requirements-legacy.txt, run from .venv-legacy). It speaks up to 2025-11-25, keeps
sessions, and asks for input the legacy way: elicitation requests on the POST's SSE stream.

It records every HTTP request it gets (method, headers, JSON body) in --record, one JSON object
per line, so a test can see which upstream session served which caller and that no client
token, client session id or reserved 2026-07-28 `_meta` key ever reached it.

Usage: legacy_v1_upstream.py --port PORT --record FILE
"""

import argparse
import asyncio

import uvicorn
from mcp.server.fastmcp import Context, FastMCP
from mcp.server.lowlevel.server import NotificationOptions
from mcp.shared.exceptions import UrlElicitationRequiredError
from mcp.types import ElicitRequestURLParams
from pydantic import BaseModel, Field

from recording import Recorder


class Login(BaseModel):
    username: str
    password: str = Field(description="Your Jira password")


class Project(BaseModel):
    project: str = Field(description="Which project to report on")


def build_server() -> FastMCP:
    server = FastMCP("legacy-v1-jira", instructions="A Jira of the old days.", host="127.0.0.1", streamable_http_path="/mcp")

    # It says it will tell when its tools or resources change, and lets clients subscribe to
    # resources: what a 2026-07-28 client's subscriptions/listen needs from it.
    low = server._mcp_server
    options = low.create_initialization_options
    def announcing(notification_options=None, experimental_capabilities=None):
        initialization = options(NotificationOptions(tools_changed=True, resources_changed=True), experimental_capabilities)
        # The SDK 1.x never announces resources.subscribe, though it serves it.
        initialization.capabilities.resources.subscribe = True
        return initialization

    low.create_initialization_options = announcing
    subscribed: set[str] = set()

    @low.subscribe_resource()
    async def subscribe(uri) -> None:
        subscribed.add(str(uri))

    @low.unsubscribe_resource()
    async def unsubscribe(uri) -> None:
        subscribed.discard(str(uri))

    @server.tool()
    async def add_tool(name: str, ctx: Context) -> str:
        """Adds a tool, and says so on the session's stream."""
        server.add_tool(lambda: f"{name} works", name=name, description="added at run time")
        await ctx.session.send_tool_list_changed()
        return f"added: {name}"

    @server.tool()
    async def touch_readme(ctx: Context) -> str:
        """Changes the readme; subscribers hear of it."""
        if "docs://readme" in subscribed:
            await ctx.session.send_resource_updated("docs://readme")
        return "touched; subscribed: " + ",".join(sorted(subscribed))

    @server.tool()
    def list_issues(project: str = "OPS", caller: str = "") -> str:
        """List the issues of a project (needs read access)."""
        return f"{project}-1: printer on fire; {project}-2: coffee machine empty"

    @server.tool()
    def create_issue(title: str, caller: str = "") -> str:
        """Create an issue (needs write access)."""
        return f"created: {title}"

    @server.tool()
    async def choose_project(ctx: Context) -> str:
        """Asks which project to report on (a harmless form)."""
        answer = await ctx.elicit("Which project?", schema=Project)
        if answer.action == "accept":
            return f"project: {answer.data.project}"
        return f"project: {answer.action}"

    @server.tool()
    async def two_questions(ctx: Context) -> str:
        """Asks twice: two rounds of input."""
        first = await ctx.elicit("First project?", schema=Project)
        second = await ctx.elicit("Second project?", schema=Project)
        names = [a.data.project if a.action == "accept" else a.action for a in (first, second)]
        return "projects: " + ", ".join(names)

    @server.tool()
    async def sign_in(ctx: Context) -> str:
        """Signs in to Jira (asks for your password, which MCP forbids)."""
        answer = await ctx.elicit("Sign in to Jira", schema=Login)
        return f"sign-in: {answer.action}"

    @server.tool()
    async def chatty(ctx: Context) -> str:
        """Logs and reports progress before answering."""
        await ctx.info("working on it")
        await ctx.report_progress(1, 2, "half way")
        return "chatty done"

    @server.tool()
    async def slow(seconds: float) -> str:
        """Takes its time (a client may give up and close its request)."""
        await asyncio.sleep(seconds)
        return "slow done"

    connected: set[str] = set()

    @server.tool()
    def connect_drive(account: str, url: str = "https://auth.example.com/connect") -> str:
        """Needs the user to connect their drive in a browser first (a URL-mode elicitation,
        -32042); the second call after that succeeds."""
        if account not in connected:
            connected.add(account)
            raise UrlElicitationRequiredError([ElicitRequestURLParams(
                mode="url", message="Connect your drive", url=f"{url}?account={account}", elicitationId=f"connect-{account}",
            )])
        return f"drive connected: {account}"

    @server.prompt()
    def triage(issue: str) -> str:
        """A triage prompt."""
        return f"Triage issue {issue}."

    @server.resource("docs://readme")
    def readme() -> str:
        """The project readme."""
        return "This is the legacy Jira MCP server."

    return server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--record", required=True)
    parser.add_argument("--require-dpop-bound-token", nargs=5, metavar=("ISSUER", "AUDIENCE", "JWKS_URL", "PUBLIC_URL", "VERDICTS"),
                        help="accept only exchanged tokens bound to a key, each request with its proof (servers/dpop_guard.py)")
    args = parser.parse_args()
    app = build_server().streamable_http_app()
    if args.require_dpop_bound_token:
        from dpop_guard import DPoPBoundTokenGuard
        app = DPoPBoundTokenGuard(app, *args.require_dpop_bound_token)
    uvicorn.run(Recorder(app, args.record), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
