"""Python `websockets` as the client, against wsframe's echo_server.

usage: py_client.py --url ws://127.0.0.1:PORT --server-log FILE [--keepalive-idle SECONDS]
       py_client.py --url wss://127.0.0.1:PORT --ca CERT.pem --server-log FILE

With --ca the same checks run over TLS, trusting that certificate (run.sh: the echo server
with --tls-cert/--tls-key and tests/fixtures/tls).

The echo server must run with a short keepalive (run.sh: --ping-interval-ms 300
--idle-timeout-ms 2000) so the keepalive check means something.
"""

import argparse
import asyncio
import ssl
import sys

import websockets
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError

from py_common import (INVALID_UTF8, SIZES, Checks, binary_of, describe, log_size, log_tail,
                       same_message, size_name, text_of, token, wait_for_log)

OP_TIMEOUT = 30


def open_ws(args, **kwargs):
    """connect() to the server under test; over TLS (wss://), trusting --ca."""
    if args.ca:
        kwargs["ssl"] = ssl.create_default_context(cafile=args.ca)
    return connect(args.url, **kwargs)


async def recv(ws):
    return await asyncio.wait_for(ws.recv(), OP_TIMEOUT)


async def echo_check(c, ws, name, message):
    try:
        await asyncio.wait_for(ws.send(message), OP_TIMEOUT)
        got = await recv(ws)
    except Exception as e:  # noqa: BLE001 - any failure is the check's failure
        return c.fail(name, f"{type(e).__name__}: {e}")
    ok, detail = same_message(message, got)
    return c.check(name, ok, detail)


async def matrix(c, args):
    # Compression is left at its default (permessage-deflate offered): the server has no
    # extensions, so it must decline, and everything below then runs uncompressed.
    async with open_ws(args, max_size=None, ping_interval=None, open_timeout=10,
                       close_timeout=10) as ws:
        ext = ws.response.headers.get("Sec-WebSocket-Extensions")
        c.check("handshake: permessage-deflate offered and declined",
                ext is None and not ws.protocol.extensions, f"server answered extensions {ext!r}")

        for kind in ("text", "binary"):
            for n in SIZES:
                msg = text_of(n) if kind == "text" else binary_of(n)
                await echo_check(c, ws, f"echo {kind} {size_name(n)}", msg)

        # Many messages in flight at once: order and type preserved.
        msgs = [text_of(i * 37 % 3000) if i % 2 else binary_of(i * 53 % 3000) for i in range(200)]
        try:
            for m in msgs:
                await ws.send(m)
            got = [await recv(ws) for _ in msgs]
            bad = next((i for i, (a, b) in enumerate(zip(msgs, got)) if a != b), None)
            c.check("200 pipelined text/binary messages echoed in order", bad is None,
                    f"message {bad} differs: {describe(got[bad]) if bad is not None else ''}")
        except Exception as e:  # noqa: BLE001
            c.fail("200 pipelined text/binary messages echoed in order", f"{type(e).__name__}: {e}")

        # Fragmented sends. The euro sign (E2 82 AC) is split across fragments, so the server
        # must validate UTF-8 across fragment boundaries rather than per frame.
        whole = "fragmented \u20ac text"
        b = whole.encode()
        cut = b.index(b"\xe2") + 1
        frags = [b[:cut], b[cut:cut + 1], b"", b[cut + 1:]]
        try:
            await ws.send(frags, text=True)
            got = await recv(ws)
            ok, detail = same_message(whole, got)
            c.check("fragmented text (4 frames, code point split across frames)", ok, detail)
        except Exception as e:  # noqa: BLE001
            c.fail("fragmented text (4 frames, code point split across frames)", str(e))

        bfrags = [binary_of(1000, 1), b"", binary_of(70000, 2), binary_of(3, 3)]
        try:
            await ws.send(bfrags)
            got = await recv(ws)
            ok, detail = same_message(b"".join(bfrags), got)
            c.check("fragmented binary (4 frames, one empty, one 70000 bytes)", ok, detail)
        except Exception as e:  # noqa: BLE001
            c.fail("fragmented binary (4 frames, one empty, one 70000 bytes)", str(e))

        # A ping between two fragments of one message: the server must answer it (control
        # frames may be interleaved, section 5.4) and still reassemble the message.
        pong = {}

        async def frags_with_ping():
            yield "first half, "
            pong["waiter"] = await ws.ping(b"mid-message")
            pong["ok"] = await asyncio.wait_for(asyncio.shield(pong["waiter"]), 10) is not None
            yield "second half"

        try:
            await asyncio.wait_for(ws.send(frags_with_ping()), OP_TIMEOUT)
            got = await recv(ws)
            ok, detail = same_message("first half, second half", got)
            c.check("ping interleaved between fragments answered, message reassembled",
                    ok and pong.get("ok"), detail or "no pong")
        except Exception as e:  # noqa: BLE001
            c.fail("ping interleaved between fragments answered, message reassembled",
                   f"{type(e).__name__}: {e}")

        # Pings with payloads: websockets resolves the waiter only for a PONG carrying the
        # same payload (sent one at a time, so no earlier ping is acknowledged by a later one).
        for payload in (b"", b"hello ping", bytes(range(125))):
            name = f"ping with {len(payload)}-byte payload answered with the same payload"
            try:
                waiter = await ws.ping(payload)
                await asyncio.wait_for(waiter, 10)
                c.check(name, True)
            except Exception as e:  # noqa: BLE001
                c.fail(name, f"{type(e).__name__}: {e}")

        # Keepalive: stay silent longer than the server's idle timeout. The server pings, the
        # client's automatic PONGs must count as traffic, and the connection must survive.
        await asyncio.sleep(args.keepalive_idle)
        await echo_check(c, ws, f"connection alive after {args.keepalive_idle}s idle "
                                "(server pings answered by the peer)", "still here")

        # Clean close, initiated by the client, with a code and a reason.
        reason = f"py-bye-{token()}"
        before = log_size(args.server_log)
        await ws.close(4001, reason)
        rc = ws.protocol.close_rcvd
        # The answer must carry the code (section 5.5.1 "typically echos"); the reason is
        # optional there, and that the server saw it is checked in its log line below.
        c.check("close 4001 with reason: server answered with Close 4001",
                rc is not None and rc.code == 4001
                and ws.protocol.close_rcvd_then_sent is False,
                f"received close {rc}")
        line = await wait_for_log(args.server_log, rf'ended: closed 4001 "{reason}" \(by peer\)',
                                  after=before)
        c.check("server logged: ended: closed 4001 \"<reason>\" (by peer)", line is not None,
                f"server log: {log_tail(args.server_log, before)}")


async def close_without_code(c, args):
    before = log_size(args.server_log)
    async with open_ws(args, max_size=None, ping_interval=None, compression=None) as ws:
        await echo_check(c, ws, "echo before codeless close", "x")
        # ws.close() insists on a code; the protocol object sends an empty Close body.
        async with ws.send_context():
            ws.protocol.send_close()
        await asyncio.wait_for(ws.wait_closed(), OP_TIMEOUT)
        rc = ws.protocol.close_rcvd
        c.check("codeless close: server echoed a codeless Close", rc is not None and rc.code == 1005,
                f"received close {rc}")
    line = await wait_for_log(args.server_log, r"ended: closed 1005 \(by peer, no status code\)",
                              after=before)
    c.check("server logged: ended: closed 1005 (by peer, no status code)", line is not None,
            f"server log: {log_tail(args.server_log, before)}")


async def invalid_utf8(c, args):
    before = log_size(args.server_log)
    async with open_ws(args, max_size=None, ping_interval=None, compression=None) as ws:
        await ws.send(INVALID_UTF8, text=True)
        try:
            got = await recv(ws)
            c.fail("invalid UTF-8 text answered with Close 1007", f"got a message back: {describe(got)}")
        except ConnectionClosedError as e:
            c.check("invalid UTF-8 text answered with Close 1007",
                    e.rcvd is not None and e.rcvd.code == 1007, f"received close {e.rcvd}")
        except Exception as e:  # noqa: BLE001
            c.fail("invalid UTF-8 text answered with Close 1007", f"{type(e).__name__}: {e}")
    line = await wait_for_log(args.server_log, r"ended: protocol error 1007", after=before)
    c.check("server logged: ended: protocol error 1007", line is not None,
            f"server log: {log_tail(args.server_log, before)}")


async def invalid_utf8_fail_fast(c, args):
    """The invalid bytes are in the first fragment; the server must fail the connection with
    1007 without waiting for the message to finish (section 8.1)."""
    name = "invalid UTF-8 in the first fragment answered with 1007 before the message ends"
    async with open_ws(args, max_size=None, ping_interval=None, compression=None) as ws:
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
        except Exception as e:  # noqa: BLE001
            return c.fail(name, f"{type(e).__name__}: {e}")
        rc = ws.protocol.close_rcvd
        c.check(name, rc is not None and rc.code == 1007, f"received close {rc}")


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--server-log", required=True)
    ap.add_argument("--keepalive-idle", type=float, default=2.5)
    ap.add_argument("--ca", help="a wss:// server's certificate (PEM) to trust")
    args = ap.parse_args()
    c = Checks("python-websockets client" + (" over TLS" if args.ca else ""))
    print(f"# websockets {websockets.__version__}", flush=True)
    for part in (matrix, close_without_code, invalid_utf8, invalid_utf8_fail_fast):
        try:
            await asyncio.wait_for(part(c, args), 120)
        except Exception as e:  # noqa: BLE001
            c.fail(f"{part.__name__} (connection)", f"{type(e).__name__}: {e}")
    return c.finish()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
