'use strict';
// A real browser against the relay example: headless Chromium (Debian's /usr/bin/chromium)
// driven over the DevTools protocol by playwright-core.
//
// usage: node browser.js --url http://127.0.0.1:PORT/ [--chromium /usr/bin/chromium]
//                        [--profile-dir DIR] [--server-log FILE] [--shots DIR]
//
// 1. The relay's page loads and has the #log element.
// 2. The page's own UI: one page watches a topic, another publishes on it through the UI;
//    the watcher's #log (read from the DOM) shows the message.
// 3. Chromium's own WebSocket, from inside the page: a subscriber and a publisher socket on one
//    topic; text (with multi-byte characters) and binary messages of several sizes published
//    arrive at the subscriber intact and in order; a close with code and reason completes
//    cleanly (wasClean, code echoed).

const fs = require('fs');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');
const { Checks, token, parseArgs, logSize, logTail, waitForLog, escapeRe } = require('./node_common');

const args = parseArgs(process.argv.slice(2), {
  chromium: '/usr/bin/chromium',
  profileDir: path.join(os.tmpdir(), 'wsframe-interop-chromium'),
  shots: '',
  serverLog: '',
});
const c = new Checks('chromium');

// Without these, Chromium's background connections are refused on this machine's closed
// network (and it tries to reach Google's hosts at every start).
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

// Runs inside the page: Chromium's WebSocket against the relay's /pub and /sub endpoints.
async function socketsInPage({ wsBase, topic }) {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const open = (p) => new Promise((resolve, reject) => {
    const ws = new WebSocket(wsBase + p);
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => resolve(ws);
    ws.onerror = () => reject(new Error(`could not open ${p}`));
  });
  const result = { checks: [] };
  const check = (name, ok, detail = '') => result.checks.push({ name, ok: !!ok, detail: String(detail) });
  const unit = 'wsframe h\u00e9llo w\u00f6rld \u20ac \u{1F600} \u2713 ';
  const textOf = (n) => {
    const enc = new TextEncoder();
    const s = unit.repeat(Math.floor(n / enc.encode(unit).length) + 1);
    const bytes = enc.encode(s).subarray(0, n);
    let t = new TextDecoder().decode(bytes).replace(/\uFFFD+$/u, '');
    return t + 'x'.repeat(n - enc.encode(t).length);
  };
  const binaryOf = (n) => {
    const b = new Uint8Array(n);
    let x = 2463534242 ^ n;
    for (let i = 0; i < n; i++) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; b[i] = x & 255; }
    return b;
  };
  const same = (a, b) => {
    if (typeof a === 'string') return typeof b === 'string' && a === b;
    if (!(b instanceof ArrayBuffer) || b.byteLength !== a.length) return false;
    const v = new Uint8Array(b);
    for (let i = 0; i < a.length; i++) if (v[i] !== a[i]) return false;
    return true;
  };
  const describe = (m) => (typeof m === 'string' ? `text of ${new TextEncoder().encode(m).length} bytes` : `binary of ${m.byteLength ?? m.length} bytes`);

  let sub; let pub; let sub2;
  try {
    sub = await open(`/sub/${topic}`);
    sub2 = await open(`/sub/${topic}`);
    pub = await open(`/pub/${topic}`);
  } catch (e) {
    check('browser sockets open on /sub and /pub', false, e.message);
    return result;
  }
  check('browser sockets open on /sub (two) and /pub', true);
  const got = []; const got2 = [];
  const closes = {};
  sub.onmessage = (e) => got.push(e.data);
  sub2.onmessage = (e) => got2.push(e.data);
  for (const [name, ws] of [['sub', sub], ['sub2', sub2], ['pub', pub]]) {
    ws.onclose = (e) => { closes[name] = { code: e.code, reason: e.reason, wasClean: e.wasClean }; };
  }

  // The subscription may be registered a moment after the handshake: publish probes until
  // both subscribers see one, then start from a clean slate.
  const isProbe = (m) => typeof m === 'string' && m.startsWith('probe ');
  let probes = 0;
  while (!(got.some(isProbe) && got2.some(isProbe)) && probes < 50) {
    pub.send(`probe ${probes++}`);
    await sleep(100);
  }
  check('subscribers receive a publication (probe)', got.some(isProbe) && got2.some(isProbe), `${probes} probes sent`);
  await sleep(200);
  got.length = 0; got2.length = 0;

  const sizes = [0, 1, 125, 126, 65535, 65536, 1 << 20];
  const msgs = [];
  for (const n of sizes) msgs.push(textOf(n));
  for (const n of sizes) msgs.push(binaryOf(n));
  for (const m of msgs) pub.send(m);
  const deadline = Date.now() + 30000;
  while ((got.length < msgs.length || got2.length < msgs.length) && Date.now() < deadline) await sleep(50);
  for (const [name, list] of [['subscriber 1', got], ['subscriber 2', got2]]) {
    for (let i = 0; i < msgs.length; i++) {
      const m = msgs[i];
      const label = `${name} received published ${describe(m)} intact, in order`;
      if (i >= list.length) { check(label, false, `only ${list.length} of ${msgs.length} messages arrived`); continue; }
      check(label, same(m, list[i]), `got ${describe(list[i])}`);
    }
  }

  const reason = `chromium-bye-${topic}`;
  pub.close(4000, reason);
  sub.close(1000);
  const until = Date.now() + 10000;
  while ((!closes.pub || !closes.sub) && Date.now() < until) await sleep(50);
  check('publisher close 4000 with reason: relay answered with Close 4000, wasClean',
    closes.pub && closes.pub.code === 4000 && closes.pub.wasClean, JSON.stringify(closes.pub));
  check('subscriber close 1000: clean', closes.sub && closes.sub.code === 1000 && closes.sub.wasClean, JSON.stringify(closes.sub));
  sub2.close();
  return result;
}

// The relay page's own UI. Adapted to examples/relay.rs's page: see README.md.
async function uiCheck(context, url, topic) {
  const watcher = await context.newPage();
  const publisher = await context.newPage();
  const errors = [];
  for (const p of [watcher, publisher]) p.on('pageerror', (e) => errors.push(String(e)));
  await watcher.goto(url);
  await publisher.goto(url);
  await uiWatch(watcher, topic);
  await uiPublishLoop(publisher, watcher, topic);
  if (args.shots) await watcher.screenshot({ path: path.join(args.shots, 'relay-page-watcher.png') }).catch(() => {});
  c.check('no JavaScript errors on the relay pages', errors.length === 0, errors.join('; '));
  await watcher.close();
  await publisher.close();
}

// Filled in from the relay page's markup (see README.md): how to watch and publish.
async function uiWatch(page, topic) {
  await uiSetTopic(page, topic);
  await clickFirst(page, ['#watch', '#subscribe', 'button:has-text("Watch")', 'button:has-text("Subscribe")']);
}

async function uiPublishLoop(publisher, watcher, topic) {
  await uiSetTopic(publisher, topic);
  await clickFirst(publisher, ['#publish-connect', '#connect-pub', 'button:has-text("Publish")'], true);
  const text = `hello from chromium ${token()} \u20ac`;
  const name = 'relay page UI: a message published in one page shows up in the watching page\'s #log';
  const deadline = Date.now() + 15000;
  let seen = '';
  while (Date.now() < deadline) {
    await uiSend(publisher, text);
    await watcher.waitForTimeout(300);
    seen = await watcher.textContent('#log').catch(() => '');
    if (seen && seen.includes(text)) break;
  }
  c.check(name, seen.includes(text), `#log: ${JSON.stringify((seen || '').slice(-300))}`);

  // A binary publication (from a socket of Chromium's in the publishing page) is listed by the
  // watcher as `[binary N bytes]`.
  await publisher.evaluate(async ({ wsBase, t }) => {
    const ws = new WebSocket(`${wsBase}/pub/${t}`);
    await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
    ws.send(new Uint8Array([1, 2, 3, 250, 251, 252, 253]));
    await new Promise((r) => setTimeout(r, 100));
    ws.close(1000);
  }, { wsBase: args.url.replace(/^http/, 'ws').replace(/\/$/, ''), t: topic });
  const ok = await watcher.waitForFunction(() => document.getElementById('log').textContent.includes('[binary 7 bytes]'),
    null, { timeout: 10000 }).then(() => true, () => false);
  c.check('relay page UI: a binary publication shows up in #log as [binary 7 bytes]', ok,
    `#log: ${JSON.stringify(((await watcher.textContent('#log')) || '').slice(-300))}`);
}

async function uiSetTopic(page, topic) {
  const input = await firstSelector(page, ['#topic', 'input[name=topic]', 'input[placeholder*=opic]']);
  if (input) await page.fill(input, topic);
}

async function uiSend(page, text) {
  const input = await firstSelector(page, ['#message', '#msg', 'input[name=message]', 'textarea']);
  if (!input) throw new Error('no message input found on the relay page');
  await page.fill(input, text);
  await clickFirst(page, ['#send', 'button:has-text("Send")']);
}

async function firstSelector(page, selectors) {
  for (const s of selectors) if (await page.$(s)) return s;
  return null;
}

async function clickFirst(page, selectors, optional = false) {
  const s = await firstSelector(page, selectors);
  if (s) await page.click(s);
  else if (!optional) throw new Error(`none of ${selectors.join(', ')} on the relay page`);
}

(async () => {
  const url = args.url;
  const wsBase = url.replace(/^http/, 'ws').replace(/\/$/, '');
  fs.rmSync(args.profileDir, { recursive: true, force: true });
  fs.mkdirSync(args.profileDir, { recursive: true });
  let context;
  try {
    context = await chromium.launchPersistentContext(args.profileDir, {
      executablePath: args.chromium, headless: true, args: FLAGS, timeout: 60000,
    });
  } catch (e) {
    c.fail('chromium starts', String(e));
    process.exit(c.finish());
  }
  try {
    console.log(`# ${args.chromium}: ${context.browser() ? context.browser().version() : 'persistent context'}`);
    const page = await context.newPage();
    const resp = await page.goto(url, { timeout: 20000 });
    c.check('GET / serves an HTML page', resp && resp.ok() && /text\/html/.test(resp.headers()['content-type'] || ''),
      resp ? `${resp.status()} ${resp.headers()['content-type']}` : 'no response');
    c.check('the page has the #log element', (await page.$('#log')) !== null, (await page.content()).slice(0, 300));

    try {
      await uiCheck(context, url, `ui-${token()}`);
    } catch (e) {
      c.fail('relay page UI: watch and publish through the page', String(e));
    }

    const topic = `t-${token()}`;
    const before = logSize(args.serverLog);
    const res = await page.evaluate(socketsInPage, { wsBase, topic });
    for (const r of res.checks) c.check(`in-page WebSocket: ${r.name}`, r.ok, r.detail);
    if (args.serverLog) {
      const line = await waitForLog(args.serverLog, new RegExp(`ended: closed 4000 "chromium-bye-${escapeRe(topic)}" \\(by peer\\)`), before);
      c.check('relay logged the publisher\'s end: closed 4000 "<reason>" (by peer)', line !== null,
        `relay log: ${logTail(args.serverLog, before)}`);
    }
  } catch (e) {
    c.fail('browser session', String(e));
  } finally {
    await context.close().catch(() => {});
  }
  process.exit(c.finish());
})();
