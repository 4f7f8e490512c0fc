"""A minimal legacy MCP upstream for the bridge benchmark (Benchmarks/bridge): HTTP/1.1 with
keep-alive on asyncio, sessions by `initialize`, and a canned tools/call result that echoes the
request's JSON-RPC id (the bridge sends its own ids, so nginx's fixed answer cannot serve it).
Not an MCP server for anything else: it answers what the benchmark sends, fast.

Usage: echo_upstream.py PORT
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid

RESULT = {"content": [{"type": "text", "text": "OPS-1: printer on fire"}]}
INITIALIZE = {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": {"name": "echo", "version": "1"}}


def response(status: str, body: bytes, extra: str = "") -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            body = await reader.readexactly(length) if length else b""
            message = json.loads(body) if body else {}
            method = message.get("method")
            if "id" not in message:
                writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
            elif method == "initialize":
                answer = json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": INITIALIZE}).encode()
                writer.write(response("200 OK", answer, f"Mcp-Session-Id: {uuid.uuid4().hex}\r\n"))
            else:
                answer = json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": RESULT}).encode()
                writer.write(response("200 OK", answer))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(serve, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
