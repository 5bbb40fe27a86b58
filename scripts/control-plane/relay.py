"""TCP relays between network namespaces, for the cluster tier's --with-eventing mode.

The processes in the tier's network namespaces reach the API server (which listens on the
host's 127.0.0.1 only) through a listener on 127.0.0.1 inside their own namespace, and the
tests reach in-cluster Services from the host's loopback. One process serves every relay: a
socket belongs to the network namespace it was created in, so each listener and each
outgoing connection is created after a setns() into the right namespace.

    relay.py CONFIG.json    [{"listen": [NS, HOST, PORT], "connect": [NS, HOST, PORT]}, ...]

NS is a name under /run/netns, or null for the relay's own namespace. Every address is
loopback or inside the namespaces the tier made: nothing here reaches another machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import socket
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
T = TypeVar("T")


@contextlib.contextmanager
def _netns(name: str | None) -> Iterator[None]:
    if name is None:
        yield
        return
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {name}")
        try:
            yield
        finally:
            if _libc.setns(home, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(home)
        os.close(target)


def in_netns(name: str | None, make: Callable[[], T]) -> T:
    with _netns(name):
        return make()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.close()


async def _serve(rule: dict[str, Any]) -> asyncio.Server:
    lns, lhost, lport = rule["listen"]
    cns, chost, cport = rule["connect"]
    loop = asyncio.get_running_loop()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        out = in_netns(cns, lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        out.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(out, (chost, cport)), 10)
        except (OSError, TimeoutError):
            out.close()
            writer.close()
            return
        r2, w2 = await asyncio.open_connection(sock=out)
        await asyncio.gather(_pipe(reader, w2), _pipe(r2, writer))

    def listener() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((lhost, lport))
        s.listen(128)
        s.setblocking(False)
        return s

    return await asyncio.start_server(handle, sock=in_netns(lns, listener))


async def main(path: str) -> None:
    with open(path) as f:
        rules = json.load(f)
    servers = [await _serve(r) for r in rules]
    print(f"relay: {len(servers)} listeners", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
