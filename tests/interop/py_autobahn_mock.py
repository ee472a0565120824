"""A stand-in for the Autobahn testsuite's fuzzingserver, written with Python `websockets`, to
prove that examples/autobahn_client.rs drives the protocol the real one speaks:

  /getCaseCount                  -> one text message with the number of cases, then Close
  /runCase?case=N&agent=A        -> the case: here, messages the client must echo, then Close
  /updateReports?agent=A         -> Close once the reports are written

It is no conformance test (the real testsuite is not available here: see README.md); it checks
the driver's flow: every case requested once and in order, with the agent name, every message
echoed, the report update requested last.

usage: py_autobahn_mock.py --client-bin target/release/examples/autobahn_client
"""

import argparse
import asyncio
import sys
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

from py_common import Checks, binary_of, same_message, text_of

CASES = 4


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--client-bin", required=True)
    ap.add_argument("--agent", default="wsframe")
    args = ap.parse_args()
    c = Checks("autobahn driver")
    requests = []
    echoes = {}

    async def handler(ws):
        url = urlsplit(ws.request.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        requests.append((url.path, q))
        try:
            if url.path == "/getCaseCount":
                await ws.send(str(CASES))
            elif url.path == "/runCase":
                n = int(q["case"])
                msgs = [text_of(n * 1000), binary_of(n * 70000), text_of(3)]
                ok = True
                for m in msgs:
                    await ws.send(m)
                    got = await asyncio.wait_for(ws.recv(), 30)
                    ok = ok and same_message(m, got)[0]
                await asyncio.wait_for(await ws.ping(b"case %d" % n), 10)
                echoes[n] = ok
            await ws.close(1000)
        except (ConnectionClosed, asyncio.TimeoutError) as e:
            echoes.setdefault(int(q.get("case", 0)), False)
            print(f"# {url.path}: {type(e).__name__}: {e}", flush=True)

    async with serve(handler, "127.0.0.1", 0, max_size=None, ping_interval=None) as server:
        port = server.sockets[0].getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            args.client_bin, "--url", f"ws://127.0.0.1:{port}", "--agent", args.agent,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), 60)
        except asyncio.TimeoutError:
            proc.kill()
            out, _ = await proc.communicate()
        out = out.decode("utf-8", "replace")

    c.check("driver exits 0", proc.returncode == 0, f"exit {proc.returncode}: {out[-400:]}")
    paths = [p for p, _ in requests]
    c.check("GET /getCaseCount first", paths[:1] == ["/getCaseCount"], f"requests {paths}")
    runs = [(q.get("case"), q.get("agent")) for p, q in requests if p == "/runCase"]
    c.check(f"/runCase?case=1..{CASES}&agent={args.agent}, each once, in order",
            runs == [(str(i), args.agent) for i in range(1, CASES + 1)], f"runs {runs}")
    c.check("every case's messages echoed and its ping answered",
            sorted(echoes) == list(range(1, CASES + 1)) and all(echoes.values()), f"echoes {echoes}")
    c.check(f"/updateReports?agent={args.agent} last",
            requests[-1:] and requests[-1][0] == "/updateReports"
            and requests[-1][1].get("agent") == args.agent, f"requests {requests[-2:]}")
    return c.finish()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
