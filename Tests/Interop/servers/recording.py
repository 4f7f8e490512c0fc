"""ASGI middleware the interop suite's upstreams share (whichever MCP SDK they run on): it
appends each HTTP request (method, path, headers, JSON body) to a file, one JSON object per line,
so a test can prove what reached the upstream: never a client token, the gateway's credential,
which session served whom."""

import json


class Recorder:
    def __init__(self, app, path: str):
        self.app = app
        self.path = path

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        headers = {}
        for name, value in scope["headers"]:
            headers.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = body.decode("latin-1")
        with open(self.path, "a", encoding="utf-8") as record:
            record.write(json.dumps({"method": scope["method"], "path": scope["path"], "headers": headers, "body": parsed}) + "\n")
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
