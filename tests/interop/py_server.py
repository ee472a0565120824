"""Python `websockets` as the server, wsframe's blocking client adapter as the client.

usage: py_server.py --client-bin target/release/examples/autobahn_client

The Rust client runs in its echo mode (`autobahn_client --echo URL [--close-after N
--close-code C --close-reason R]`): it connects, echoes every data message it receives, and
prints `connected`, then `ended: <how the connection ended>` (or `handshake failed: ...` with
exit code 2). The server drives each scenario, chosen by the request path, and checks what
comes back; this file then checks the client's own account of the ending.
"""

import argparse
import asyncio
import base64
import hashlib
import os
import re
import struct
import sys

import websockets
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed, ConnectionClosedError

from py_common import (INVALID_UTF8, SIZES, Checks, binary_of, describe, same_message,
                       size_name, text_of, token)

OP_TIMEOUT = 30
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Scenarios:
    """Server-side halves of the scenarios. Each records its checks on `c`."""

    def __init__(self, c: Checks):
        self.c = c
        self.close_reason = f"py-server-bye-{token()}"
        self.client_reason = f"py-client-bye-{token()}"

    async def handler(self, ws):
        path = ws.request.path
        try:
            await getattr(self, "s_" + path.strip("/").replace("-", "_"))(ws)
        except Exception as e:  # noqa: BLE001
            self.c.fail(f"server side of {path}", f"{type(e).__name__}: {e}")

    async def echo(self, ws, name, message):
        c = self.c
        try:
            await asyncio.wait_for(ws.send(message), OP_TIMEOUT)
            got = await asyncio.wait_for(ws.recv(), OP_TIMEOUT)
        except Exception as e:  # noqa: BLE001
            return c.fail(name, f"{type(e).__name__}: {e}")
        ok, detail = same_message(message, got)
        return c.check(name, ok, detail)

    async def s_matrix(self, ws):
        c = self.c
        h = ws.request.headers
        key = h.get("Sec-WebSocket-Key", "")
        try:
            key_ok = len(base64.b64decode(key, validate=True)) == 16
        except ValueError:
            key_ok = False
        c.check("client request: version 13, 16-byte base64 key, no extension offered",
                h.get("Sec-WebSocket-Version") == "13" and key_ok
                and h.get("Sec-WebSocket-Extensions") is None,
                f"headers {dict(h.raw_items())}")

        # The server sends, the client echoes: its frames arrive masked (websockets fails the
        # connection with 1002 on an unmasked client frame) and its own fragmentation of
        # large messages (16 KiB frames by default) is reassembled here.
        for kind in ("text", "binary"):
            for n in SIZES:
                await self.echo(ws, f"client echoes {kind} {size_name(n)}",
                                text_of(n) if kind == "text" else binary_of(n))

        msgs = [text_of(i * 37 % 3000) if i % 2 else binary_of(i * 53 % 3000) for i in range(200)]
        for m in msgs:
            await ws.send(m)
        got = [await asyncio.wait_for(ws.recv(), OP_TIMEOUT) for _ in msgs]
        bad = next((i for i, (a, b) in enumerate(zip(msgs, got)) if a != b), None)
        c.check("200 pipelined text/binary messages echoed in order", bad is None,
                f"message {bad}: {describe(got[bad]) if bad is not None else ''}")

        # Fragmented messages from the server, with a ping between fragments: the client must
        # answer the ping mid-message and reassemble (UTF-8 checked across the split).
        whole = "fragmented \u20ac text"
        b = whole.encode()
        cut = b.index(b"\xe2") + 1
        pong = {}

        async def frags():
            yield b[:cut]
            yield b""
            waiter = await ws.ping(b"mid-message")
            pong["ok"] = await asyncio.wait_for(waiter, 10) is not None
            yield b[cut:]

        await ws.send(frags(), text=True)
        got = await asyncio.wait_for(ws.recv(), OP_TIMEOUT)
        ok, detail = same_message(whole, got)
        c.check("fragmented text to the client (code point split, ping interleaved) echoed",
                ok and pong.get("ok"), detail or "ping not answered")

        parts = [binary_of(1000, 1), b"", binary_of(70000, 2), binary_of(3, 3)]
        await ws.send(parts)
        got = await asyncio.wait_for(ws.recv(), OP_TIMEOUT)
        ok, detail = same_message(b"".join(parts), got)
        c.check("fragmented binary to the client (4 frames, one empty) echoed", ok, detail)

        for payload in (b"", b"hello ping", bytes(range(125))):
            name = f"client answers a ping with {len(payload)}-byte payload with the same payload"
            try:
                await asyncio.wait_for(await ws.ping(payload), 10)
                c.check(name, True)
            except Exception as e:  # noqa: BLE001
                c.fail(name, f"{type(e).__name__}: {e}")

        await ws.close(4002, self.close_reason)
        rc = ws.protocol.close_rcvd
        # Section 5.5.1: the answer typically echoes the code; echoing the reason is optional.
        # That the client saw the reason is checked in its `ended:` line.
        c.check("server-initiated close 4002 with reason: client answered with Close 4002",
                rc is not None and rc.code == 4002
                and ws.protocol.close_rcvd_then_sent is False, f"received close {rc}")

    async def s_client_close(self, ws):
        c = self.c
        await ws.send("one message, then the client closes")
        got = await asyncio.wait_for(ws.recv(), OP_TIMEOUT)
        c.check("client-close scenario: message echoed", got == "one message, then the client closes",
                describe(got))
        try:
            got = await asyncio.wait_for(ws.recv(), OP_TIMEOUT)
            c.fail("client-initiated close 4003 with reason received", f"got a message {describe(got)}")
        except ConnectionClosed:
            rc = ws.protocol.close_rcvd
            c.check("client-initiated close 4003 with reason received and echoed",
                    rc is not None and rc.code == 4003 and rc.reason == self.client_reason
                    and ws.protocol.close_rcvd_then_sent is True, f"received close {rc}")

    async def s_invalid_utf8(self, ws):
        await ws.send(INVALID_UTF8, text=True)
        try:
            got = await asyncio.wait_for(ws.recv(), OP_TIMEOUT)
            self.c.fail("invalid UTF-8 to the client answered with Close 1007",
                        f"client echoed {describe(got)}")
        except ConnectionClosedError as e:
            self.c.check("invalid UTF-8 to the client answered with Close 1007",
                         e.rcvd is not None and e.rcvd.code == 1007, f"received close {e.rcvd}")

    async def s_invalid_utf8_fragment(self, ws):
        name = "invalid UTF-8 in a first fragment to the client: 1007 before the message ends"

        async def frags():
            yield INVALID_UTF8
            try:
                await asyncio.wait_for(ws.wait_closed(), 5)
            except asyncio.TimeoutError:
                pass
            yield b"never sent"

        try:
            await ws.send(frags(), text=True)
        except ConnectionClosed:
            pass
        rc = ws.protocol.close_rcvd
        self.c.check(name, rc is not None and rc.code == 1007, f"received close {rc}")

    async def _wait_gone(self, ws):
        try:
            await asyncio.wait_for(ws.wait_closed(), OP_TIMEOUT)
        except asyncio.TimeoutError:
            pass

    s_bad_accept = _wait_gone
    s_bad_extension = _wait_gone
    s_bad_protocol = _wait_gone


def tamper(connection, request, response):
    """process_response: break the handshake answer for the bad-* paths."""
    path = request.path
    if path == "/bad-accept":
        # Headers is a multi-dict: assignment appends, so delete the right value first.
        del response.headers["Sec-WebSocket-Accept"]
        response.headers["Sec-WebSocket-Accept"] = base64.b64encode(b"x" * 20).decode()
    elif path == "/bad-extension":
        response.headers["Sec-WebSocket-Extensions"] = "permessage-deflate"
    elif path == "/bad-protocol":
        response.headers["Sec-WebSocket-Protocol"] = "chat.unrequested"
    return response


def refuse(connection, request):
    """process_request: answer /not-101 with a plain 200 instead of switching protocols."""
    if request.path == "/not-101":
        return connection.respond(200, "this is not a websocket\n")
    return None


async def run_client(bin_path, url, extra=(), timeout=60):
    proc = await asyncio.create_subprocess_exec(
        bin_path, "--echo", url, *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
        return -1, out.decode("utf-8", "replace") + "\n(killed after timeout)"
    return proc.returncode, out.decode("utf-8", "replace")


def ended_line(out):
    m = re.search(r"^ended: (.*)$", out, re.M)
    return m.group(1) if m else None


def short(out):
    return out.strip().replace("\n", " | ")[-500:]


# --- A raw server that looks at the client's frames byte by byte (masking). ------------------

async def read_frame(reader):
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", await reader.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", await reader.readexactly(8))[0]
    key = await reader.readexactly(4) if b1 & 0x80 else None
    payload = await reader.readexactly(n)
    if key:
        payload = bytes(x ^ key[i % 4] for i, x in enumerate(payload))
    return b0, bool(b1 & 0x80), key, payload


async def raw_masking(c, bin_path):
    result = {}

    async def conn(reader, writer):
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            key = re.search(rb"(?im)^sec-websocket-key:\s*(\S+)", head).group(1)
            accept = base64.b64encode(hashlib.sha1(key + GUID.encode()).digest())
            writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            sent = [os.urandom(10 + i) for i in range(8)]
            for p in sent:
                writer.write(bytes([0x82, len(p)]) + p)
            await writer.drain()
            frames = [await asyncio.wait_for(read_frame(reader), 10) for _ in sent]
            writer.write(b"\x88\x02\x03\xe8")  # Close 1000
            await writer.drain()
            reply = await asyncio.wait_for(read_frame(reader), 10)
            result.update(sent=sent, frames=frames, reply=reply)
        except Exception as e:  # noqa: BLE001
            result["error"] = f"{type(e).__name__}: {e}"
        finally:
            writer.close()

    server = await asyncio.start_server(conn, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    rc, out = await run_client(bin_path, f"ws://127.0.0.1:{port}/raw")
    server.close()
    name = "client frames on the wire: all masked, fresh non-zero key per frame, payloads intact"
    if "error" in result:
        return c.fail(name, f"{result['error']}; client: {short(out)}")
    frames = result["frames"]
    keys = [f[2] for f in frames]
    ok = (all(f[1] for f in frames) and len(set(keys)) == len(keys)
          and all(k != b"\0\0\0\0" for k in keys)
          and [f[3] for f in frames] == result["sent"] and all(f[0] == 0x82 for f in frames))
    c.check(name, ok, f"frames {[(hex(f[0]), f[1], f[2] and f[2].hex(), len(f[3])) for f in frames]}")
    reply = result["reply"]
    c.check("client's Close reply is masked and echoes 1000",
            reply[0] == 0x88 and reply[1] and reply[3][:2] == b"\x03\xe8", f"reply {reply}")


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--client-bin", required=True)
    args = ap.parse_args()
    c = Checks("python-websockets server")
    print(f"# websockets {websockets.__version__}", flush=True)
    sc = Scenarios(c)
    async with serve(sc.handler, "127.0.0.1", 0, max_size=None, ping_interval=None,
                     process_request=refuse, process_response=tamper) as server:
        port = server.sockets[0].getsockname()[1]
        base = f"ws://127.0.0.1:{port}"

        rc, out = await run_client(args.client_bin, f"{base}/matrix")
        end = ended_line(out)
        c.check("client reports: ended: closed 4002 \"<reason>\" (by peer), exit 0",
                rc == 0 and end == f'closed 4002 "{sc.close_reason}" (by peer)',
                f"exit {rc}, output: {short(out)}")

        rc, out = await run_client(args.client_bin, f"{base}/client-close",
                                   ["--close-after", "1", "--close-code", "4003",
                                    "--close-reason", sc.client_reason])
        end = ended_line(out)
        c.check("client reports: ended: closed 4003 (by us; peer replied 4003 ...), exit 0",
                rc == 0 and end is not None and end.startswith("closed 4003 (by us; peer replied 4003"),
                f"exit {rc}, output: {short(out)}")

        for path in ("invalid-utf8", "invalid-utf8-fragment"):
            rc, out = await run_client(args.client_bin, f"{base}/{path}")
            end = ended_line(out)
            c.check(f"{path}: client reports: ended: protocol error 1007",
                    end is not None and end.startswith("protocol error 1007"),
                    f"exit {rc}, output: {short(out)}")

        for path, what in (("bad-accept", "a wrong Sec-WebSocket-Accept"),
                           ("bad-extension", "an extension it did not offer"),
                           ("bad-protocol", "a subprotocol it did not offer"),
                           ("not-101", "a 200 instead of 101")):
            rc, out = await run_client(args.client_bin, f"{base}/{path}", timeout=20)
            c.check(f"client refuses a handshake answer with {what} (exit 2, no 'connected')",
                    rc == 2 and "handshake failed" in out and "connected" not in out.splitlines(),
                    f"exit {rc}, output: {short(out)}")

    await raw_masking(c, args.client_bin)
    return c.finish()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
