"""examples/client.rs (the stdin-lines client, on the tokio client adapter) against a Python
`websockets` server.

usage: py_line_client.py --client-bin target/release/examples/client

The client sends each stdin line as a text message and prints text messages one per line,
binary ones as `[binary N bytes]`; stderr has `connected to <url>` and `ended: <reason>`; at the
end of stdin it closes with 1000; exit 0 after a clean close, 1 otherwise, 2 when the handshake
failed. The blocking client adapter is covered by py_server.py (autobahn_client --echo); this
covers the async one.
"""

import argparse
import asyncio
import re
import sys

import websockets
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

from py_common import INVALID_UTF8, SIZES, Checks, binary_of, size_name, text_of, token

OP_TIMEOUT = 30


class Run:
    """One client process: stdin written on demand, stdout lines and stderr collected."""

    def __init__(self, proc):
        self.proc = proc
        self.out = []
        self.err = []
        self.changed = asyncio.Event()
        self.readers = [asyncio.ensure_future(self._read(proc.stdout, self.out)),
                        asyncio.ensure_future(self._read(proc.stderr, self.err))]

    async def _read(self, stream, into):
        while True:
            line = await stream.readline()
            if not line:
                return
            into.append(line.decode("utf-8", "replace").rstrip("\n"))
            self.changed.set()

    async def until(self, pred, timeout=OP_TIMEOUT):
        async def wait():
            while not pred():
                self.changed.clear()
                await self.changed.wait()
        try:
            await asyncio.wait_for(wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    async def finish(self, timeout=OP_TIMEOUT):
        if self.proc.stdin and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except asyncio.TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            self.err.append("(killed after timeout)")
        await asyncio.gather(*self.readers)
        return self.proc.returncode

    def ended(self):
        m = [l for l in self.err if l.startswith("ended: ")]
        return m[-1][len("ended: "):] if m else None

    def stderr(self):
        return " | ".join(self.err)[-400:]


async def start(bin_path, url):
    proc = await asyncio.create_subprocess_exec(
        bin_path, url, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, limit=16 << 20)
    return Run(proc)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--client-bin", required=True)
    args = ap.parse_args()
    c = Checks("examples/client")
    print(f"# websockets {websockets.__version__}", flush=True)
    seen = {}
    server_reason = f"py-line-bye-{token()}"

    async def handler(ws):
        path = ws.request.path
        got = seen.setdefault(path, {"messages": [], "close": None, "pong": None})
        try:
            if path == "/push":
                await ws.send(binary_of(70000))

                async def frags():
                    yield "pushed \u20ac "
                    got["pong"] = await asyncio.wait_for(await ws.ping(b"line-client"), 10)
                    yield "fragmented text"
                await ws.send(frags())
            elif path == "/server-close":
                await ws.send("closing now")
                await ws.close(4004, server_reason)
            elif path == "/invalid-utf8":
                await ws.send(INVALID_UTF8, text=True)
            async for m in ws:
                got["messages"].append(m)
                await ws.send(m)
        except ConnectionClosed:
            pass
        except Exception as e:  # noqa: BLE001
            c.fail(f"server side of {path}", f"{type(e).__name__}: {e}")
        finally:
            await ws.wait_closed()
            got["close"] = ws.protocol.close_rcvd

    def refuse(connection, request):
        if request.path == "/not-101":
            return connection.respond(200, "this is not a websocket\n")
        return None

    async with serve(handler, "127.0.0.1", 0, max_size=None, ping_interval=None,
                     process_request=refuse) as server:
        base = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"

        # Lines of every size in the matrix (text only: stdin carries lines), then EOF.
        lines = [text_of(n) for n in SIZES]
        run = await start(args.client_bin, f"{base}/lines")
        ok = await run.until(lambda: any(l.startswith("connected to ") for l in run.err), 10)
        c.check("client prints 'connected to <url>'", ok, run.stderr())
        for line in lines:
            run.proc.stdin.write(line.encode() + b"\n")
        await run.proc.stdin.drain()
        await run.until(lambda: len(run.out) >= len(lines))
        rc = await run.finish()
        for i, n in enumerate(SIZES):
            got = run.out[i] if i < len(run.out) else None
            c.check(f"stdin line of {size_name(n)} bytes sent as text and the echo printed",
                    got == lines[i], f"got {None if got is None else len(got.encode())} bytes")
        srv = seen.get("/lines", {})
        c.check("server received each line as one text message (masked frames accepted)",
                srv.get("messages") == lines, f"{len(srv.get('messages', []))} messages")
        close = srv.get("close")
        c.check("end of stdin: server received Close 1000",
                close is not None and close.code == 1000, f"received close {close}")
        end = run.ended()
        c.check("client reports: ended: closed 1000 (by us; peer replied 1000...), exit 0",
                rc == 0 and end is not None and end.startswith("closed 1000 (by us; peer replied 1000"),
                f"exit {rc}, stderr: {run.stderr()}")

        # Binary and fragmented text pushed by the server, a PING between the fragments.
        run = await start(args.client_bin, f"{base}/push")
        ok = await run.until(lambda: len(run.out) >= 2)
        rc = await run.finish()
        c.check("server's binary message printed as [binary 70000 bytes]",
                run.out[:1] == ["[binary 70000 bytes]"], f"stdout {run.out[:2]}")
        c.check("server's fragmented text (PING between fragments) printed whole, PING answered",
                run.out[1:2] == ["pushed \u20ac fragmented text"] and seen["/push"]["pong"] is not None,
                f"stdout {run.out[:2]}, pong {seen['/push']['pong']}")

        # The server closes first, with a code and a reason; stdin stays open.
        run = await start(args.client_bin, f"{base}/server-close")
        await run.until(lambda: run.ended() is not None)
        rc = await run.finish()
        end = run.ended()
        c.check("server's Close 4004 with reason: client reports it and exits 0",
                rc == 0 and end == f'closed 4004 "{server_reason}" (by peer)'
                and run.out[:1] == ["closing now"], f"exit {rc}, stderr: {run.stderr()}")
        close = seen.get("/server-close", {}).get("close")
        c.check("client answered the server's Close with 4004",
                close is not None and close.code == 4004, f"received close {close}")

        run = await start(args.client_bin, f"{base}/invalid-utf8")
        await run.until(lambda: run.ended() is not None)
        rc = await run.finish()
        end = run.ended()
        close = seen.get("/invalid-utf8", {}).get("close")
        c.check("invalid UTF-8 from the server: client sends 1007, reports protocol error 1007, exit 1",
                rc == 1 and end is not None and end.startswith("protocol error 1007")
                and close is not None and close.code == 1007,
                f"exit {rc}, stderr: {run.stderr()}, server received close {close}")

        run = await start(args.client_bin, f"{base}/not-101")
        rc = await run.finish()
        c.check("a 200 instead of 101: handshake failed, exit 2",
                rc == 2 and any(l.startswith("handshake failed") for l in run.err),
                f"exit {rc}, stderr: {run.stderr()}")
    return c.finish()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
