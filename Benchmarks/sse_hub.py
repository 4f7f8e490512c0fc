"""A minimal SSE upstream for the benchmark: answers every POST with an event stream and keeps
it open; GET /emit?n=K on the control port writes one event to stream K carrying the
CLOCK_MONOTONIC time it was written, so a client on the same machine can measure delivery
latency. Written on raw asyncio so 5,000 open streams cost little."""

import asyncio
import sys
import time

streams: list[asyncio.StreamWriter] = []


async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await reader.readexactly(length)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n")
            await writer.drain()
            streams.append(writer)
            try:
                await reader.read()  # hold until the client (or the gateway) closes
            finally:
                streams.remove(writer)
            return
    except (asyncio.IncompleteReadError, ConnectionError):
        return


async def control(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    target = head.split(b" ")[1].decode()
    body = str(len(streams)).encode()
    if target.startswith("/emit"):
        index = int(target.split("n=")[1]) % max(len(streams), 1)
        payload = f'data: {{"jsonrpc":"2.0","method":"notifications/message","params":{{"t":{time.monotonic_ns()}}}}}\n\n'.encode()
        chunk = f"{len(payload):x}\r\n".encode() + payload + b"\r\n"
        streams[index].write(chunk)
        await streams[index].drain()
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
    await writer.drain()
    writer.close()


async def main() -> None:
    upstream_port, control_port = int(sys.argv[1]), int(sys.argv[2])
    await asyncio.start_server(upstream, "127.0.0.1", upstream_port, backlog=8192)
    await asyncio.start_server(control, "127.0.0.1", control_port)
    await asyncio.Event().wait()


asyncio.run(main())
