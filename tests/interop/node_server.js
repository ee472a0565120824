'use strict';
// Node `ws` as the server, wsframe's blocking client adapter as the client.
// usage: node node_server.js --client-bin target/release/examples/autobahn_client
//
// The client runs in echo mode (see py_server.py for its contract). `ws` fails a connection on
// any framing error (an unmasked client frame, a bad length, bad UTF-8 from the client...), so
// every scenario also asserts that the server saw no 'error' event.

const http = require('http');
const { spawn } = require('child_process');
const WebSocket = require('ws');
const {
  SIZES, INVALID_UTF8, textOf, binaryOf, sizeName, token, Checks, Peer, describe, sameMessage, sleep, parseArgs,
} = require('./node_common');

const args = parseArgs(process.argv.slice(2), {});
const c = new Checks('node-ws server');
const closeReason = `node-server-bye-${token()}`;
const clientReason = `node-client-bye-${token()}`;

function send(ws, data, options = {}) {
  return new Promise((resolve, reject) => ws.send(data, options, (err) => (err ? reject(err) : resolve())));
}

async function echo(peer, name, message) {
  try {
    await send(peer.ws, message);
    const got = await peer.next();
    const [ok, detail] = sameMessage(message, got);
    return c.check(name, ok, detail);
  } catch (e) {
    return c.fail(name, String(e));
  }
}

const scenarios = {
  async '/matrix'(peer, req) {
    const { ws } = peer;
    const h = req.headers;
    c.check('client request: version 13, 16-byte base64 key, no extension offered',
      h['sec-websocket-version'] === '13' && Buffer.from(h['sec-websocket-key'] || '', 'base64').length === 16
        && h['sec-websocket-extensions'] === undefined, JSON.stringify(h));
    for (const kind of ['text', 'binary']) {
      for (const n of SIZES) await echo(peer, `client echoes ${kind} ${sizeName(n)}`, kind === 'text' ? textOf(n) : binaryOf(n));
    }
    const msgs = [];
    for (let i = 0; i < 200; i++) msgs.push(i % 2 ? textOf((i * 37) % 3000) : binaryOf((i * 53) % 3000));
    msgs.forEach((m) => ws.send(m));
    let bad = null;
    for (let i = 0; i < msgs.length; i++) {
      const got = await peer.next();
      if (bad === null && !sameMessage(msgs[i], got)[0]) bad = `message ${i}: ${describe(got)}`;
    }
    c.check('200 pipelined text/binary messages echoed in order', bad === null, bad);

    const whole = Buffer.from('fragmented \u20ac text');
    const cut = whole.indexOf(0xe2) + 1;
    await send(ws, whole.subarray(0, cut), { binary: false, fin: false });
    await send(ws, Buffer.alloc(0), { fin: false });
    ws.ping(Buffer.from('mid-message'));
    await send(ws, whole.subarray(cut), { fin: true });
    try {
      const pong = await peer.pong();
      const got = await peer.next();
      const [ok, detail] = sameMessage(whole.toString(), got);
      c.check('fragmented text to the client (code point split, ping interleaved) echoed',
        ok && pong.toString() === 'mid-message', detail || `pong ${pong.toString('hex')}`);
    } catch (e) {
      c.fail('fragmented text to the client (code point split, ping interleaved) echoed', String(e));
    }

    const parts = [binaryOf(1000, 1), Buffer.alloc(0), binaryOf(70000, 2), binaryOf(3, 3)];
    for (let i = 0; i < parts.length; i++) await send(ws, parts[i], { binary: true, fin: i === parts.length - 1 });
    try {
      const [ok, detail] = sameMessage(Buffer.concat(parts), await peer.next());
      c.check('fragmented binary to the client (4 frames, one empty) echoed', ok, detail);
    } catch (e) {
      c.fail('fragmented binary to the client (4 frames, one empty) echoed', String(e));
    }

    for (const payload of [Buffer.alloc(0), Buffer.from('hello ping'), Buffer.from(Array.from({ length: 125 }, (_, i) => i))]) {
      const name = `client answers a ping with ${payload.length}-byte payload with the same payload`;
      try {
        ws.ping(payload);
        const pong = await peer.pong();
        c.check(name, pong.equals(payload), `pong ${pong.toString('hex')}`);
      } catch (e) {
        c.fail(name, String(e));
      }
    }

    ws.close(4002, closeReason);
    const closed = await peer.close();
    // Section 5.5.1: the answer typically echoes the code; echoing the reason is optional.
    // That the client saw the reason is checked in its `ended:` line.
    c.check('server-initiated close 4002 with reason: client answered with Close 4002, wasClean',
      closed.code === 4002 && closed.wasClean, JSON.stringify(closed));
  },

  async '/client-close'(peer) {
    await echo(peer, 'client-close scenario: message echoed', 'one message, then the client closes');
    const closed = await peer.close();
    c.check('client-initiated close 4003 with reason received, wasClean',
      closed.code === 4003 && closed.reason === clientReason && closed.wasClean, JSON.stringify(closed));
  },

  async '/invalid-utf8'(peer) {
    await send(peer.ws, INVALID_UTF8, { binary: false });
    const closed = await peer.close();
    c.check('invalid UTF-8 to the client answered with Close 1007', closed.code === 1007 && peer.messages.length === 0,
      `${JSON.stringify(closed)}, ${peer.messages.length} messages echoed`);
  },

  async '/invalid-utf8-fragment'(peer) {
    await send(peer.ws, INVALID_UTF8, { binary: false, fin: false });
    try {
      const closed = await peer.close(5000);
      c.check('invalid UTF-8 in a first fragment to the client: 1007 before the message ends', closed.code === 1007, JSON.stringify(closed));
    } catch (e) {
      c.fail('invalid UTF-8 in a first fragment to the client: 1007 before the message ends', String(e));
    }
    peer.ws.terminate();
  },
};

function runClient(url, extra = [], ms = 60000) {
  return new Promise((resolve) => {
    const p = spawn(args.clientBin, ['--echo', url, ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { out += d; });
    const timer = setTimeout(() => { out += '\n(killed after timeout)'; p.kill('SIGKILL'); }, ms);
    p.on('close', (code) => { clearTimeout(timer); resolve({ code: code === null ? -1 : code, out }); });
  });
}

function endedLine(out) {
  const m = /^ended: (.*)$/m.exec(out);
  return m ? m[1] : null;
}

function short(out) { return out.trim().replace(/\n/g, ' | ').slice(-500); }

(async () => {
  console.log(`# ws ${require('ws/package.json').version}`);
  const wss = new WebSocket.WebSocketServer({ noServer: true, maxPayload: 64 << 20 });
  const pending = [];
  wss.on('headers', (headers, req) => {
    const set = (name, value) => {
      const i = headers.findIndex((l) => l.toLowerCase().startsWith(`${name.toLowerCase()}:`));
      if (i >= 0) headers.splice(i, 1);
      headers.push(`${name}: ${value}`);
    };
    if (req.url === '/bad-accept') set('Sec-WebSocket-Accept', Buffer.alloc(20, 120).toString('base64'));
    if (req.url === '/bad-extension') set('Sec-WebSocket-Extensions', 'permessage-deflate');
    if (req.url === '/bad-protocol') set('Sec-WebSocket-Protocol', 'chat.unrequested');
  });
  wss.on('connection', (ws, req) => {
    const peer = new Peer(ws);
    const run = scenarios[req.url];
    if (!run) return;
    pending.push((async () => {
      try {
        await run(peer, req);
      } catch (e) {
        c.fail(`server side of ${req.url}`, String(e));
      }
      c.check(`${req.url}: no 'error' event on the server's socket`, peer.errors.length === 0, peer.errors.map(String).join('; '));
    })());
  });
  const server = http.createServer((req, res) => { res.writeHead(404); res.end(); });
  server.on('upgrade', (req, socket, head) => {
    if (req.url === '/not-101') {
      socket.end('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 24\r\nConnection: close\r\n\r\nthis is not a websocket\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const base = `ws://127.0.0.1:${server.address().port}`;

  const settle = async () => { await Promise.all(pending.splice(0)); };

  let r = await runClient(`${base}/matrix`);
  await settle();
  c.check('client reports: ended: closed 4002 "<reason>" (by peer), exit 0',
    r.code === 0 && endedLine(r.out) === `closed 4002 "${closeReason}" (by peer)`, `exit ${r.code}, output: ${short(r.out)}`);

  r = await runClient(`${base}/client-close`, ['--close-after', '1', '--close-code', '4003', '--close-reason', clientReason]);
  await settle();
  const end = endedLine(r.out);
  c.check('client reports: ended: closed 4003 (by us; peer replied 4003 ...), exit 0',
    r.code === 0 && end !== null && end.startsWith('closed 4003 (by us; peer replied 4003'), `exit ${r.code}, output: ${short(r.out)}`);

  for (const path of ['invalid-utf8', 'invalid-utf8-fragment']) {
    r = await runClient(`${base}/${path}`);
    await settle();
    const e = endedLine(r.out);
    c.check(`${path}: client reports: ended: protocol error 1007`, e !== null && e.startsWith('protocol error 1007'), `exit ${r.code}, output: ${short(r.out)}`);
  }

  for (const [path, what] of [['bad-accept', 'a wrong Sec-WebSocket-Accept'], ['bad-extension', 'an extension it did not offer'],
    ['bad-protocol', 'a subprotocol it did not offer'], ['not-101', 'a 200 instead of 101']]) {
    r = await runClient(`${base}/${path}`, [], 20000);
    await sleep(50);
    c.check(`client refuses a handshake answer with ${what} (exit 2, no 'connected')`,
      r.code === 2 && r.out.includes('handshake failed') && !r.out.split('\n').includes('connected'), `exit ${r.code}, output: ${short(r.out)}`);
  }
  wss.clients.forEach((ws) => ws.terminate());
  server.close();
  process.exit(c.finish());
})();
