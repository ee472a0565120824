'use strict';
// Node `ws` as the client, against wsframe's echo_server.
// usage: node node_client.js --url ws://127.0.0.1:PORT --server-log FILE [--keepalive-idle-ms 2500]
//
// `ws` fails the connection on any framing error it sees (emitting 'error'), so every check
// below also asserts that no 'error' event was raised.

const WebSocket = require('ws');
const {
  SIZES, INVALID_UTF8, textOf, binaryOf, sizeName, token, Checks, Peer, describe, sameMessage,
  logSize, logTail, waitForLog, sleep, escapeRe, parseArgs,
} = require('./node_common');

const args = parseArgs(process.argv.slice(2), { keepaliveIdleMs: '2500' });
const c = new Checks('node-ws client');

function open(url, options = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { handshakeTimeout: 10000, ...options });
    const peer = new Peer(ws);
    ws.once('open', () => resolve(peer));
    ws.once('error', reject);
    ws.once('unexpected-response', (req, res) => reject(new Error(`unexpected response ${res.statusCode}`)));
  });
}

function send(ws, data, options = {}) {
  return new Promise((resolve, reject) => ws.send(data, options, (err) => (err ? reject(err) : resolve())));
}

async function echoCheck(peer, name, message) {
  try {
    await send(peer.ws, message);
    const got = await peer.next();
    const [ok, detail] = sameMessage(message, got);
    return c.check(name, ok, detail);
  } catch (e) {
    return c.fail(name, String(e));
  }
}

function noErrors(peer, name) {
  c.check(`${name}: no 'error' event from ws`, peer.errors.length === 0, peer.errors.map(String).join('; '));
}

async function matrix() {
  // perMessageDeflate is offered by default; the server must decline it.
  const peer = await open(args.url);
  const { ws } = peer;
  c.check('handshake: permessage-deflate offered and declined', ws.extensions === '', `extensions ${JSON.stringify(ws.extensions)}`);

  for (const kind of ['text', 'binary']) {
    for (const n of SIZES) {
      await echoCheck(peer, `echo ${kind} ${sizeName(n)}`, kind === 'text' ? textOf(n) : binaryOf(n));
    }
  }

  const msgs = [];
  for (let i = 0; i < 200; i++) msgs.push(i % 2 ? textOf((i * 37) % 3000) : binaryOf((i * 53) % 3000));
  try {
    msgs.forEach((m) => ws.send(m));
    let bad = null;
    for (let i = 0; i < msgs.length; i++) {
      const got = await peer.next();
      if (bad === null && !sameMessage(msgs[i], got)[0]) bad = `message ${i}: ${describe(got)}`;
    }
    c.check('200 pipelined text/binary messages echoed in order', bad === null, bad);
  } catch (e) {
    c.fail('200 pipelined text/binary messages echoed in order', String(e));
  }

  // Fragmented text with the euro sign's three bytes split over two frames, an empty frame
  // between, and a PING with a payload interleaved between fragments (section 5.4).
  const whole = Buffer.from('fragmented \u20ac text');
  const cut = whole.indexOf(0xe2) + 1;
  try {
    await send(ws, whole.subarray(0, cut), { binary: false, fin: false });
    await send(ws, Buffer.alloc(0), { fin: false });
    ws.ping(Buffer.from('mid-message'));
    await send(ws, whole.subarray(cut), { fin: true });
    const pong = await peer.pong();
    const got = await peer.next();
    const [ok, detail] = sameMessage(whole.toString(), got);
    c.check('fragmented text (code point split across frames) with a ping interleaved', ok && pong.toString() === 'mid-message',
      detail || `pong payload ${pong.toString('hex')}`);
  } catch (e) {
    c.fail('fragmented text (code point split across frames) with a ping interleaved', String(e));
  }

  try {
    const parts = [binaryOf(1000, 1), Buffer.alloc(0), binaryOf(70000, 2), binaryOf(3, 3)];
    for (let i = 0; i < parts.length; i++) await send(ws, parts[i], { binary: true, fin: i === parts.length - 1 });
    const got = await peer.next();
    const [ok, detail] = sameMessage(Buffer.concat(parts), got);
    c.check('fragmented binary (4 frames, one empty, one 70000 bytes)', ok, detail);
  } catch (e) {
    c.fail('fragmented binary (4 frames, one empty, one 70000 bytes)', String(e));
  }

  for (const payload of [Buffer.alloc(0), Buffer.from('hello ping'), Buffer.from(Array.from({ length: 125 }, (_, i) => i))]) {
    const name = `ping with ${payload.length}-byte payload answered with the same payload`;
    try {
      ws.ping(payload);
      const pong = await peer.pong();
      c.check(name, pong.equals(payload), `pong payload ${pong.toString('hex')}`);
    } catch (e) {
      c.fail(name, String(e));
    }
  }

  const idle = Number(args.keepaliveIdleMs);
  await sleep(idle);
  await echoCheck(peer, `connection alive after ${idle} ms idle (server pings answered by the peer)`, 'still here');

  const reason = `node-bye-${token()}`;
  const before = logSize(args.serverLog);
  ws.close(4001, reason);
  try {
    const closed = await peer.close();
    // The answer must carry the code (section 5.5.1 "typically echos"); the reason is optional
    // there, and that the server saw it is checked in its log line below.
    c.check('close 4001 with reason: server answered with Close 4001, wasClean',
      closed.code === 4001 && closed.wasClean, JSON.stringify(closed));
  } catch (e) {
    c.fail('close 4001 with reason: server echoed code and reason, wasClean', String(e));
  }
  const line = await waitForLog(args.serverLog, new RegExp(`ended: closed 4001 "${escapeRe(reason)}" \\(by peer\\)`), before);
  c.check('server logged: ended: closed 4001 "<reason>" (by peer)', line !== null, `server log: ${logTail(args.serverLog, before)}`);
  noErrors(peer, 'matrix connection');
}

async function codelessClose() {
  const before = logSize(args.serverLog);
  const peer = await open(args.url, { perMessageDeflate: false });
  await echoCheck(peer, 'echo before codeless close', 'x');
  peer.ws.close(); // no code: an empty Close body
  try {
    const closed = await peer.close();
    c.check('codeless close: server echoed a codeless Close (1005), wasClean', closed.code === 1005 && closed.wasClean, JSON.stringify(closed));
  } catch (e) {
    c.fail('codeless close: server echoed a codeless Close (1005), wasClean', String(e));
  }
  const line = await waitForLog(args.serverLog, /ended: closed 1005 \(by peer, no status code\)/, before);
  c.check('server logged: ended: closed 1005 (by peer, no status code)', line !== null, `server log: ${logTail(args.serverLog, before)}`);
}

async function invalidUtf8() {
  const before = logSize(args.serverLog);
  const peer = await open(args.url, { perMessageDeflate: false });
  await send(peer.ws, INVALID_UTF8, { binary: false });
  try {
    const closed = await peer.close();
    c.check('invalid UTF-8 text answered with Close 1007', closed.code === 1007 && peer.messages.length === 0,
      `${JSON.stringify(closed)}, ${peer.messages.length} messages received`);
  } catch (e) {
    c.fail('invalid UTF-8 text answered with Close 1007', String(e));
  }
  const line = await waitForLog(args.serverLog, /ended: protocol error 1007/, before);
  c.check('server logged: ended: protocol error 1007', line !== null, `server log: ${logTail(args.serverLog, before)}`);
}

async function invalidUtf8FailFast() {
  const name = 'invalid UTF-8 in the first fragment answered with 1007 before the message ends';
  const peer = await open(args.url, { perMessageDeflate: false });
  await send(peer.ws, INVALID_UTF8, { binary: false, fin: false });
  try {
    const closed = await peer.close(5000);
    c.check(name, closed.code === 1007, JSON.stringify(closed));
  } catch (e) {
    c.fail(name, String(e));
  }
}

(async () => {
  console.log(`# ws ${require('ws/package.json').version}`);
  for (const part of [matrix, codelessClose, invalidUtf8, invalidUtf8FailFast]) {
    try {
      await Promise.race([part(), sleep(120000).then(() => { throw new Error('timed out after 120 s'); })]);
    } catch (e) {
      c.fail(`${part.name} (connection)`, String(e));
    }
  }
  process.exit(c.finish());
})();
