"""A TCP proxy on 127.0.0.1 that delays every chunk by a fixed time in each direction.

This kernel has no netem, so this stands in for a WAN link: each chunk read on one side is written
to the other side DELAY ms later, in order (the TCP handshake itself is not delayed). The proxy
prints its port on stdout once listening and exits after --lifetime seconds.

    python3 bench/delay_proxy.py --target 2222 --delay-ms 20 --lifetime 600
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    queue: asyncio.Queue = asyncio.Queue()

    async def read() -> None:
        while True:
            data = await reader.read(65536)
            await queue.put((time.monotonic() + delay, data))
            if not data:
                return

    async def write() -> None:
        while True:
            due, data = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    try:
        await asyncio.gather(read(), write())
    except (ConnectionError, OSError):
        writer.close()


async def serve(target_port: int, delay: float, lifetime: float, port: int) -> None:
    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            client_writer.close()
            return
        for w in (client_writer, server_writer):
            sock = w.get_extra_info("socket")
            if sock is not None:
                import socket

                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(pipe(client_reader, server_writer, delay), pipe(server_reader, client_writer, delay))
        for w in (client_writer, server_writer):
            w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        try:
            await asyncio.wait_for(server.serve_forever(), timeout=lifetime)
        except asyncio.TimeoutError:
            pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=int, required=True, help="the port on 127.0.0.1 to forward to")
    parser.add_argument("--delay-ms", type=float, default=20.0, help="one-way delay per chunk (default 20)")
    parser.add_argument("--lifetime", type=float, default=600.0, help="exit after this many seconds (default 600)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: any free one)")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.target, args.delay_ms / 1000, args.lifetime, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
