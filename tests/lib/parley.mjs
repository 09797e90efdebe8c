// Helpers for tests and benchmarks that talk to a real `parley serve` over the network.
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { existsSync, readFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const bin = resolve(repo, process.env.PARLEY_BIN || 'build/parley');
export const model = process.env.PARLEY_TEST_MODEL || resolve(repo, '../shared/models/stories260K.gguf');
export const librivox = '/usr/share/pocketsphinx/test/data/librivox';
export const clips = ['0870', '0880', '0890', '0920', '0930'].map((n) => ({
  wav: `${librivox}/sense_and_sensibility_01_austen_64kb-${n}.wav`,
  text: readFileSync(`${librivox}/sense_and_sensibility_01_austen_64kb-${n}.txt`, 'utf8').trim(),
}));

// A free TCP port on loopback (for servers a test starts).
export function freePort() {
  return new Promise((ok) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

export function tempDir() {
  return mkdtempSync(join(tmpdir(), 'parley-test-'));
}

// Servers still running when the test process ends (a failed test skips its own stop()).
const running = new Set();
process.on('exit', () => {
  for (const p of running) p.kill('SIGKILL');
});

// Starts `parley serve` on a free port; resolves once it listens.
export async function startServer(args = [], { withModel = true, db, env } = {}) {
  if (withModel && !existsSync(model)) {
    throw new Error(`no test model at ${model}: put stories260K.gguf in ../shared/models/ beside the checkout or set PARLEY_TEST_MODEL`);
  }
  const dir = tempDir();
  const full = ['serve', '--port', '0', '--db', db || join(dir, 'parley.db')];
  if (withModel) full.push('--model', model);
  full.push(...args);
  const proc = spawn(bin, full, { stdio: ['ignore', 'pipe', 'pipe'], env: env ? { ...process.env, ...env } : process.env });
  running.add(proc);
  proc.on('exit', () => running.delete(proc));
  let log = '';
  const port = await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error('server did not start:\n' + log)), 30000);
    proc.stderr.on('data', (d) => {
      log += d;
      const m = /listening on https?:\/\/[^ ]*:(\d+) /.exec(log);
      if (m) {
        clearTimeout(timer);
        ok(Number(m[1]));
      }
    });
    proc.on('exit', (code) => {
      clearTimeout(timer);
      fail(new Error(`server exited with ${code}:\n${log}`));
    });
  });
  proc.stdout.resume();
  const exited = new Promise((ok) => proc.on('exit', (code, signal) => ok({ code, signal })));
  return {
    proc,
    port,
    url: `http://127.0.0.1:${port}`,
    ws: `ws://127.0.0.1:${port}/ws`,
    log: () => log,
    exited,
    async stop() {
      if (proc.exitCode === null) proc.kill('SIGTERM');
      return exited;
    },
  };
}

// The headers of a WebSocket upgrade request (add the key's, the Origin, the Host to them).
export const wsUpgrade = { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==' };

// One HTTP GET to a local server with exactly these headers (a Host among them replaces the
// usual one); resolves to { status, headers, body } (a 101 upgrade is closed at once).
export function httpGet(port, path, headers = {}) {
  return new Promise((ok, fail) => {
    const req = request({ host: '127.0.0.1', port, path, headers, setHost: !headers.Host });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      ok({ status: res.statusCode, headers: res.headers, body: '' });
    });
    req.on('response', (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => ok({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on('error', fail);
    req.end();
  });
}

// GET /sessions/{id} with the session's resume token (from its `ready`).
export function fetchHistory(url, sessionId, token) {
  return fetch(`${url}/sessions/${sessionId}`, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
}

// Resolves with check()'s first truthy value, asking every 100 ms; throws after `ms`.
export async function until(what, check, ms = 10000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// A WebSocket client that keeps every message in order: {text, json} or {binary: Buffer}.
export class Client {
  constructor(url, protocols) {
    this.msgs = [];
    this.waiters = [];
    this.ws = new WebSocket(url, protocols);
    this.ws.binaryType = 'arraybuffer';
    this.closed = new Promise((ok) => this.ws.addEventListener('close', (e) => ok(e)));
    this.opened = new Promise((ok, fail) => {
      this.ws.addEventListener('open', ok);
      this.ws.addEventListener('error', () => fail(new Error('websocket error')));
    });
    this.ws.addEventListener('message', (e) => {
      const m = typeof e.data === 'string'
        ? { t: performance.now(), json: JSON.parse(e.data), text: e.data }
        : { t: performance.now(), binary: Buffer.from(e.data) };
      this.msgs.push(m);
      this.waiters = this.waiters.filter((w) => !w());
    });
  }
  static async open(url, protocols) {
    const c = new Client(url, protocols);
    await c.opened;
    return c;
  }
  send(obj) {
    this.ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj));
  }
  sendBinary(buf) {
    this.ws.send(buf);
  }
  // Resolves with the first message (index >= from) matching pred.
  waitFor(pred, { from = 0, timeout = 30000 } = {}) {
    return new Promise((ok, fail) => {
      const check = () => {
        for (let i = from; i < this.msgs.length; i++) {
          if (pred(this.msgs[i])) {
            clearTimeout(timer);
            ok(this.msgs[i]);
            return true;
          }
        }
        return false;
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== check);
        fail(new Error('timed out; got: ' + this.msgs.map((m) => m.text || `<${m.binary.length} bytes>`).join('\n')));
      }, timeout);
      if (!check()) this.waiters.push(check);
    });
  }
  waitType(type, opts) {
    return this.waitFor((m) => m.json && m.json.type === type, opts);
  }
  ofType(type, from = 0) {
    return this.msgs.slice(from).filter((m) => m.json && m.json.type === type).map((m) => m.json);
  }
  close() {
    this.ws.close();
    return this.closed;
  }
}

// 16-bit PCM mono WAV reader (the LibriVox clips).
export function readWav(path) {
  const b = readFileSync(path);
  let pos = 12;
  let rate = 0;
  while (pos + 8 <= b.length) {
    const id = b.toString('ascii', pos, pos + 4);
    const size = b.readUInt32LE(pos + 4);
    if (id === 'fmt ') rate = b.readUInt32LE(pos + 12);
    if (id === 'data') return { rate, pcm: b.subarray(pos + 8, pos + 8 + size) };
    pos += 8 + size + (size & 1);
  }
  throw new Error('no data chunk in ' + path);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Streams PCM in 20 ms frames at real-time pace (or as fast as possible).
export async function streamPcm(client, pcm, rate, { realtime = true } = {}) {
  const frame = (rate / 50) * 2;
  const t0 = performance.now();
  for (let i = 0, n = 0; i < pcm.length; i += frame, n++) {
    client.sendBinary(pcm.subarray(i, Math.min(i + frame, pcm.length)));
    if (realtime) {
      const due = t0 + (n + 1) * 20;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
    }
  }
}

// One push-to-talk turn with a clip; returns the messages of the turn and the stop time.
export async function voiceTurn(client, clip, { realtime = true, tts = true, timeout = 60000, reply = true, played = true } = {}) {
  const { rate, pcm } = readWav(clip.wav);
  const from = client.msgs.length;
  client.send({ type: 'start', sample_rate: rate, tts });
  await streamPcm(client, pcm, rate, { realtime });
  const tStop = performance.now();
  client.send({ type: 'stop' });
  const final = await client.waitFor((m) => m.json && m.json.type === 'transcript' && m.json.is_final, { from, timeout });
  let done = null;
  // This turn's end (an earlier reply cut by this turn sends its own `interrupted`).
  const earlier = Math.max(0, ...client.msgs.slice(0, from).map((m) => (m.json && m.json.turn_id) || 0));
  if (final.json.text && reply) done = await client.waitFor((m) => m.json && (m.json.type === 'response_done' || (m.json.type === 'interrupted' && m.json.turn_id > earlier)), { from, timeout });
  const msgs = client.msgs.slice(from);
  if (played && done && done.json.type === 'response_done') reportPlayedOut(client, msgs);
  return { from, tStop, final, done, msgs };
}

// Tells the server the client has played the reply's audio to the end (as a page does after
// each chunk), so the next turn does not count as talking over it.
export function reportPlayedOut(client, msgs) {
  const ready = client.msgs.find((m) => m.json && m.json.type === 'ready');
  const rate = ready ? ready.json.audio_format.sample_rate : 22050;
  for (let i = msgs.length - 2; i >= 0; i--) {
    const m = msgs[i];
    if (m.json && m.json.type === 'text_chunk' && m.json.has_audio && msgs[i + 1].binary) {
      client.send({ type: 'playback', turn_id: m.json.turn_id, chunk_id: m.json.chunk_id, played_ms: Math.round((msgs[i + 1].binary.length / 2 / rate) * 1000) });
      return;
    }
  }
}

// Where the speech is in a clip: the first and last 10 ms frames clearly above the background.
// Where the speech is in a LibriVox clip: from its forced word alignment (the .json beside the
// .wav: first word's start, last word's end) when there is one, else from the signal.
export function clipBounds(wav, pcm) {
  const json = wav.replace(/\.wav$/, '.json');
  if (existsSync(json)) {
    const words = JSON.parse(readFileSync(json, 'utf8')).w.filter((w) => w.t && !/^[<[+]/.test(w.t));
    if (words.length) return { startMs: words[0].b * 1000, endMs: (words.at(-1).b + words.at(-1).d) * 1000 };
  }
  return speechBounds(pcm);
}

export function speechBounds(pcm, RATE = 16000) {
  const n = pcm.length / 2, win = RATE / 100, rms = [];
  for (let i = 0; i + win <= n; i += win) {
    let s = 0;
    for (let j = 0; j < win; j++) s += pcm.readInt16LE((i + j) * 2) ** 2;
    rms.push(Math.sqrt(s / win));
  }
  const loud = Math.max(...rms) * 0.1;
  const first = rms.findIndex((r) => r > loud), last = rms.length - 1 - [...rms].reverse().findIndex((r) => r > loud);
  return { startMs: first * 10, endMs: (last + 1) * 10 };
}

// A microphone that never stops: queued sounds at real-time pace, silence in between.
export class Mic {
  constructor(client, RATE = 16000) {
    this.frame = RATE / 50; // 20 ms
    this.client = client;
    this.queue = [];
    this.running = true;
    this.loop = this.run();
  }
  play(pcm) {
    return new Promise((ok) => this.queue.push({ pcm, pos: 0, started: ok }));
  }
  async run() {
    const t0 = performance.now();
    for (let n = 0; this.running; n++) {
      const frame = Buffer.alloc(this.frame * 2);
      const cur = this.queue[0];
      if (cur) {
        if (cur.pos === 0) cur.started(performance.now());
        const part = cur.pcm.subarray(cur.pos, cur.pos + this.frame * 2);
        part.copy(frame);
        cur.pos += this.frame * 2;
        if (cur.pos >= cur.pcm.length) this.queue.shift();
      }
      this.client.sendBinary(frame);
      const wait = t0 + (n + 1) * 20 - performance.now();
      if (wait > 0) await sleep(wait);
    }
  }
  async stop() {
    this.running = false;
    await this.loop;
  }
}

export function words(s) {
  return s.toLowerCase().replace(/[^a-z0-9' ]/g, ' ').split(/\s+/).filter(Boolean);
}

export function wer(ref, hyp) {
  const r = words(ref), h = words(hyp);
  const d = Array.from({ length: r.length + 1 }, (_, i) => [i, ...Array(h.length).fill(0)]);
  for (let j = 1; j <= h.length; j++) d[0][j] = j;
  for (let i = 1; i <= r.length; i++)
    for (let j = 1; j <= h.length; j++)
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (r[i - 1] !== h[j - 1] ? 1 : 0));
  return d[r.length][h.length] / Math.max(1, r.length);
}

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function percentile(xs, p) {
  const s = [...xs].sort((a, b) => a - b);
  if (!s.length) return NaN;
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}
