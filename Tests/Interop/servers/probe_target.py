"""MCP servers for `mcp-bouncer probe` and `init`, built on the official MCP Python SDK.

--mode open: no authentication at all (what the seeds describe); its tools carry the
  annotations `init` proposes scopes from, plus a prompt and a resource.
--mode any-origin: the open server with the SDK's DNS-rebinding protection off (as when it is
  bound to 0.0.0.0): a page on any origin may call it.
--mode sse: the open server over the 2024-11-05 HTTP+SSE transport (GET /sse).
--mode hostile: a server whose names try to write into the policy `init` writes: a server name,
  tools and a prompt carrying `${file:...}` and `${env:...}` substitutions, quotes, a newline and
  YAML syntax (the policy loader substitutes in every string value).
--mode lax-auth: the SDK's own authorization support (401 challenge, protected resource
  metadata) with a token verifier that checks signature, issuer and expiry against the
  authorization server's keys but skips the audience: a token for any resource of that issuer
  opens it (the confused deputy `probe --foreign-token` must catch).

Usage: probe_target.py --port PORT --mode open|any-origin|sse|hostile|lax-auth [--issuer URL]
"""

import argparse

import uvicorn
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations


class AudienceBlindVerifier:
    """Verifies JWTs like most JWT middleware does by default: no audience check."""

    def __init__(self, issuer: str):
        import httpx
        import jwt

        metadata = httpx.get(f"{issuer}/.well-known/oauth-authorization-server").json()
        self.jwks = jwt.PyJWKClient(metadata["jwks_uri"])
        self.issuer = issuer
        self.jwt = jwt

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            key = self.jwks.get_signing_key_from_jwt(token)
            claims = self.jwt.decode(token, key.key, algorithms=["ES256", "RS256"], issuer=self.issuer, options={"verify_aud": False})
        except Exception:  # noqa: BLE001 - any failure is a refusal
            return None
        return AccessToken(token=token, client_id=claims.get("client_id", "unknown"), scopes=str(claims.get("scope", "")).split(),
                           expires_at=claims.get("exp"), subject=claims.get("sub"))


def build_server(name: str, verifier=None, auth=None) -> MCPServer:
    server = MCPServer(name, token_verifier=verifier, auth=auth)

    @server.tool(annotations=ToolAnnotations(readOnlyHint=True))
    def list_tickets(queue: str = "OPS") -> str:
        """List the open tickets of a queue."""
        return f"{queue}-1: printer on fire"

    @server.tool()
    def create_ticket(title: str) -> str:
        """Open a ticket."""
        return f"created: {title}"

    @server.tool(annotations=ToolAnnotations(destructiveHint=True))
    def purge_queue(queue: str) -> str:
        """Delete every ticket of a queue. The probe must never call this."""
        raise RuntimeError(f"purge_queue({queue}) was called: a probe must never call a tool not annotated read-only")

    @server.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False))
    def comment(ticket: str, text: str) -> str:
        """Add a comment to a ticket."""
        return f"commented on {ticket}"

    @server.prompt()
    def triage(ticket: str) -> str:
        """Triage a ticket."""
        return f"Triage {ticket}"

    @server.resource("tickets://queues")
    def queues() -> str:
        """The queues."""
        return "OPS, DEV"

    return server


HOSTILE_NAME = "${file:/etc/hostname}"
HOSTILE_TOOLS = ["${env:HOME}", 'x: "y" #z', "multi\nline: ${file:/etc/passwd}", "${", "{ a: [b] }"]


def build_hostile_server() -> MCPServer:
    server = MCPServer(HOSTILE_NAME)
    for index, name in enumerate(HOSTILE_TOOLS):
        def tool() -> str:
            return "ok"
        server.add_tool(tool, name=name, description=f"hostile tool {index}", annotations=ToolAnnotations(readOnlyHint=index == 0))

    @server.prompt(name="${env:PATH} prompt")
    def prompt() -> str:
        return "p"

    return server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=["open", "any-origin", "sse", "hostile", "lax-auth"], required=True)
    parser.add_argument("--issuer", help="the authorization server (lax-auth)")
    args = parser.parse_args()
    url = f"http://127.0.0.1:{args.port}/mcp"
    if args.mode == "sse":
        uvicorn.run(build_server("helpdesk").sse_app(), host="127.0.0.1", port=args.port, log_level="warning")
        return
    if args.mode == "any-origin":
        app = build_server("helpdesk").streamable_http_app(streamable_http_path="/mcp", host="0.0.0.0")
        uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
        return
    if args.mode == "open":
        server = build_server("helpdesk")
    elif args.mode == "hostile":
        server = build_hostile_server()
    else:
        auth = AuthSettings(issuer_url=args.issuer, resource_server_url=url, required_scopes=[])
        server = build_server("helpdesk", verifier=AudienceBlindVerifier(args.issuer), auth=auth)
    app = server.streamable_http_app(streamable_http_path="/mcp", host="127.0.0.1")
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
