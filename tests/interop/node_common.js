'use strict';
// Helpers shared by the Node interop drivers: named checks, payloads, message queues, log
// polling. Output format matches py_common.py: `ok - name` / `FAIL - name: detail`, then
// `checks: N passed, M failed`.

const fs = require('fs');
const crypto = require('crypto');

const SIZES = [0, 1, 125, 126, 65535, 65536, 4 << 20];
const UNIT = Buffer.from('wsframe h\u00e9llo w\u00f6rld \u20ac \u{1F600} \u2713 ');
// Valid UTF-8 followed by a UTF-16 surrogate (ED A0 80): invalid.
const INVALID_UTF8 = Buffer.from('cebae1bdb9cf83cebcceb5eda080656469746564', 'hex');

// A string whose UTF-8 encoding is exactly n bytes, with multi-byte characters in it.
function textOf(n) {
  const reps = Math.floor(n / UNIT.length) + 1;
  const raw = Buffer.concat(Array(reps).fill(UNIT)).subarray(0, n);
  let s = new TextDecoder('utf-8', { fatal: false }).decode(raw).replace(/\uFFFD+$/u, '');
  return s + 'x'.repeat(n - Buffer.byteLength(s));
}

// Deterministic pseudo-random bytes (xorshift), the same for a given (n, seed).
function binaryOf(n, seed = 6455) {
  const out = Buffer.allocUnsafe(n);
  let x = (seed + n) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

function sizeName(n) {
  return n >= 1 << 20 && n % (1 << 20) === 0 ? `${n >> 20}MiB` : String(n);
}

function token() {
  return crypto.randomBytes(4).toString('hex');
}

class Checks {
  constructor(label) { this.label = label; this.passed = 0; this.failed = 0; }
  check(name, ok, detail = '') {
    if (ok) { this.passed++; console.log(`ok - ${name}`); } else { this.failed++; console.log(`FAIL - ${name}: ${detail}`); }
    return ok;
  }
  fail(name, detail) { return this.check(name, false, detail); }
  finish() {
    console.log(`checks: ${this.passed} passed, ${this.failed} failed`);
    return this.failed === 0 && this.passed > 0 ? 0 : 1;
  }
}

// Wraps a `ws` WebSocket: queues messages, pongs, the close, and errors as they happen.
class Peer {
  constructor(ws) {
    this.ws = ws;
    this.messages = [];
    this.pongs = [];
    this.errors = [];
    this.waiters = [];
    this.closed = null;
    ws.on('message', (data, isBinary) => { this.messages.push({ data: toBuffer(data), isBinary }); this.wake(); });
    ws.on('pong', (data) => { this.pongs.push(Buffer.from(data)); this.wake(); });
    ws.on('error', (err) => { this.errors.push(err); this.wake(); });
    ws.addEventListener('close', (ev) => {
      this.closed = { code: ev.code, reason: ev.reason, wasClean: ev.wasClean };
      this.wake();
    });
  }
  wake() { const w = this.waiters; this.waiters = []; w.forEach((f) => f()); }
  // Resolves with pred()'s first truthy value, or rejects after ms.
  until(pred, ms, what) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
      const test = () => {
        let v;
        try { v = pred(); } catch (e) { clearTimeout(timer); reject(e); return; }
        if (v) { clearTimeout(timer); resolve(v); } else { this.waiters.push(test); }
      };
      test();
    });
  }
  next(ms = 30000) {
    return this.until(() => {
      if (this.messages.length) return this.messages.shift();
      if (this.closed) throw new Error(`connection closed (${this.closed.code} ${this.closed.reason}) while waiting for a message`);
      return null;
    }, ms, 'a message');
  }
  pong(ms = 10000) { return this.until(() => this.pongs.shift(), ms, 'a pong'); }
  close(ms = 10000) { return this.until(() => this.closed, ms, 'the close'); }
}

function toBuffer(data) {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

function describe(m) {
  if (typeof m === 'string') return `text of ${Buffer.byteLength(m)} bytes: ${JSON.stringify(m.slice(0, 40))}`;
  if (m && m.data) return `${m.isBinary ? 'binary' : 'text'} of ${m.data.length} bytes: ${m.data.subarray(0, 20).toString('hex')}`;
  return `binary of ${m.length} bytes: ${m.subarray(0, 20).toString('hex')}`;
}

// Compares a received {data, isBinary} with what was sent (string = text, Buffer = binary).
function sameMessage(expected, got) {
  const wantBinary = typeof expected !== 'string';
  const want = wantBinary ? expected : Buffer.from(expected);
  if (got.isBinary !== wantBinary || !got.data.equals(want)) {
    return [false, `expected ${describe(expected)}, got ${describe(got)}`];
  }
  return [true, ''];
}

function logSize(path) {
  try { return fs.statSync(path).size; } catch { return 0; }
}

function logTail(path, after, limit = 600) {
  try { return fs.readFileSync(path).subarray(after).toString().slice(-limit).trim().replace(/\n/g, ' | '); } catch { return '(no log)'; }
}

async function waitForLog(path, regex, after = 0, ms = 10000) {
  const deadline = Date.now() + ms;
  for (;;) {
    let text = '';
    try { text = fs.readFileSync(path).subarray(after).toString(); } catch { /* not yet */ }
    const line = text.split('\n').find((l) => regex.test(l));
    if (line) return line;
    if (Date.now() > deadline) return null;
    await sleep(50);
  }
}

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

function escapeRe(s) { return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'); }

function parseArgs(argv, defaults) {
  const out = { ...defaults };
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i].replace(/^--/, '').replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    out[k] = argv[i + 1];
  }
  return out;
}

module.exports = {
  SIZES, INVALID_UTF8, textOf, binaryOf, sizeName, token, Checks, Peer, describe, sameMessage,
  logSize, logTail, waitForLog, sleep, escapeRe, parseArgs,
};
