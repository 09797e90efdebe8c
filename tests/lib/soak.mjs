// The soak: simulated clients hold long conversations with one server, with random disconnects,
// resumes, barge-ins and malformed messages mixed in, while the server is killed (kill -9) and
// restarted on the same database. Afterwards every turn a client saw finish is in the store
// exactly once with the text the client got, and the server's memory, threads and file
// descriptors are back where they were after warm-up. Used by `make soak` (tests/soak/run.mjs,
// 8 clients x 100 turns) and, short, by tests/integration/soak.test.mjs.
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { startServer, fetchHistory, Client, clips, tempDir, voiceTurn, reportPlayedOut } from './parley.mjs';

const { DatabaseSync } = await import('node:sqlite');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A small seeded generator, so that a run can be repeated (--seed).
function rng(seed) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}

const PROMPTS = ['Hello there.', 'Tell me about the little dog.', 'What happened next?', 'Once upon a time there was a girl.', 'Why is the sky blue?', 'Say something nice.'];
const MALFORMED = [
  { text: 'this is not json', code: 'invalid_json' },
  { text: '{"type":"fly"}', code: 'unknown_type' },
  { text: '{"type":"text","text":"   "}', code: 'empty_text' },
  { text: '[1,2,3]', code: 'invalid_message' },
  { binary: Buffer.alloc(3), code: 'odd_frame' },
];

// What the process uses now: resident memory (KiB), threads, open file descriptors.
export function processFigures(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const names = {};
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try {
      const n = readFileSync(`/proc/${pid}/task/${t}/comm`, 'utf8').trim();
      names[n] = (names[n] || 0) + 1;
    } catch {
      // the thread ended meanwhile
    }
  }
  const fdTargets = [];
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      fdTargets.push(readlinkSync(`/proc/${pid}/fd/${fd}`).replace(/\[\d+\]$/, ''));
    } catch {
      // closed meanwhile
    }
  }
  return {
    rssKiB: Number(/^VmRSS:\s+(\d+)/m.exec(status)[1]),
    threads: Number(/^Threads:\s+(\d+)/m.exec(status)[1]),
    fds: readdirSync(`/proc/${pid}/fd`).length,
    threadNames: names,
    fdKinds: fdTargets.sort().join(' '),
  };
}

// GET on a connection of its own that closes after the answer (a kept-alive one would count
// among the server's descriptors).
function getOnce(url) {
  return new Promise((ok, fail) => {
    const req = httpRequest(url, { agent: false, headers: { Connection: 'close' } }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => ok(body));
    });
    req.on('error', fail);
    req.end();
  });
}

// Resolves once the server has no open session (and a moment more for their sockets).
async function quiet(url) {
  for (let i = 0; i < 100; i++) {
    const open = Number(/^parley_sessions (\S+)/m.exec(await getOnce(`${url}/metrics`))[1]);
    if (open === 0) break;
    await sleep(100);
  }
  await sleep(500);
}

class Closed extends Error {}

// One simulated user: a conversation (session id and token) over any number of connections.
class Conversation {
  constructor(n, random, soak) {
    this.n = n;
    this.random = random;
    this.soak = soak;
    this.sid = null;
    this.token = null;
    this.c = null;
    this.seen = new Map(); // turn_id -> { kind: 'done' | 'interrupted', text }
    this.attempted = 0;
    this.counts = { text: 0, voice: 0, barge: 0, disconnect: 0, malformed: 0, resumed: 0, cut: 0 };
    this.unexpected = [];
  }

  // Waits for a message, or throws Closed when the connection ends first.
  async wait(pred, from, timeout = 60000) {
    const c = this.c;
    return Promise.race([c.waitFor(pred, { from, timeout }), c.closed.then(() => { throw new Closed(); })]);
  }

  async connect() {
    for (let attempt = 0; ; attempt++) {
      try {
        const url = this.soak.server.ws + (this.sid ? `?session_id=${this.sid}` : '');
        this.c = await Client.open(url);
        const first = (await this.wait((m) => m.json && (m.json.type === 'ready' || m.json.type === 'error'), 0, 10000)).json;
        if (first.type === 'error' && first.code !== 'unknown_session') throw new Error(`connect: ${first.code}: ${first.message}`);
        const ready = first.type === 'ready' ? first : (await this.wait((m) => m.json && m.json.type === 'ready', 0, 10000)).json;
        if (first.code === 'unknown_session') {
          // Nothing of this session reached the store (the server went down before its first
          // turn was written): right only if no turn of it was seen to end.
          if (this.seen.size) this.unexpected.push(`session ${this.sid} is unknown after a restart, with ${this.seen.size} finished turns`);
          this.counts.unknown = (this.counts.unknown || 0) + 1;
          this.sid = null;
        }
        if (this.sid) this.counts.resumed++;
        else ({ session_id: this.sid, resume_token: this.token } = ready);
        this.c.send({ type: 'start', sample_rate: 16000, tts: true });
        return;
      } catch (e) {
        // The server is restarting (refused, or closed before ready): try again shortly.
        if (this.c) this.c.ws.close();
        if (attempt > 300) throw e;
        await sleep(100);
      }
    }
  }

  // Sends a turn; resolves with its end (response_done / interrupted / error), retrying a turn
  // refused while the session waits for an LLM slot.
  async send(turn) {
    for (;;) {
      const from = this.c.msgs.length;
      turn(from);
      const end = await this.wait((m) => m.json && ['response_done', 'interrupted', 'error'].includes(m.json.type), from);
      if (end.json.type === 'error' && end.json.code === 'queued') {
        await this.wait((m) => m.json && m.json.type === 'admitted', from, 120000);
        continue;
      }
      return { from, end: end.json };
    }
  }

  record(end, from) {
    if (end.type === 'response_done') {
      this.seen.set(end.turn_id, { kind: 'done', text: end.text });
      reportPlayedOut(this.c, this.c.msgs.slice(from));
    } else if (end.type === 'interrupted') {
      this.seen.set(end.turn_id, { kind: 'interrupted', text: end.heard });
    } else {
      this.unexpected.push(`${end.code}: ${end.message}`);
    }
  }

  async textTurn() {
    const text = PROMPTS[Math.floor(this.random() * PROMPTS.length)];
    const { from, end } = await this.send(() => this.c.send({ type: 'text', text }));
    this.record(end, from);
  }

  async voiceTurn() {
    const clip = clips[Math.floor(this.random() * clips.length)];
    const r = await Promise.race([voiceTurn(this.c, clip, { realtime: false, played: false }), this.c.closed.then(() => { throw new Closed(); })]);
    if (r.done) this.record(r.done.json, r.from);
  }

  // Talks over the reply once its first phrase is out.
  async bargeIn() {
    const { from, end } = await this.send((from) => {
      this.c.send({ type: 'text', text: 'Tell me a long story about a cat.' });
      this.wait((m) => m.json && m.json.type === 'text_chunk', from).then(() => this.c.send({ type: 'interrupt' }), () => {});
    });
    if (end.type === 'response_done') {
      // The reply was written out before the interrupt came, but it is still playing: the
      // interrupt cuts it to what was heard (or, all heard, leaves it whole).
      const cut = await this.wait((m) => m.json && m.json.type === 'interrupted' && m.json.turn_id === end.turn_id, from, 3000).catch((e) => {
        if (e instanceof Closed) throw e;
        return null;
      });
      if (cut) return this.record(cut.json, from);
    }
    this.record(end, from);
  }

  // Goes away in the middle of a reply, then comes back to the same conversation.
  async disconnect() {
    const from = this.c.msgs.length;
    this.c.send({ type: 'text', text: 'Tell me a story.' });
    await this.wait((m) => m.json && (m.json.type === 'text_chunk' || m.json.type === 'error'), from);
    await this.c.close();
    await this.connect();
  }

  async malformed() {
    const m = MALFORMED[Math.floor(this.random() * MALFORMED.length)];
    const from = this.c.msgs.length;
    if (m.binary) this.c.sendBinary(m.binary);
    else this.c.send(m.text);
    const e = (await this.wait((x) => x.json && x.json.type === 'error', from, 10000)).json;
    if (e.code !== m.code) this.unexpected.push(`malformed ${JSON.stringify(m.text || '<3 bytes>')}: ${e.code}`);
  }

  async turn(forced) {
    this.attempted++;
    if (this.random() < 0.1) {
      this.counts.malformed++;
      await this.malformed();
    }
    const r = this.random();
    const kind = forced || (r < 0.55 ? 'text' : r < 0.75 ? 'voice' : r < 0.9 ? 'barge' : 'disconnect');
    this.counts[kind]++;
    if (kind === 'text') await this.textTurn();
    else if (kind === 'voice') await this.voiceTurn();
    else if (kind === 'barge') await this.bargeIn();
    else await this.disconnect();
  }

  // `count` turns (the first of the kinds in `first`, in that order); a connection lost to a
  // server restart is resumed and the cut turn counted.
  async run(count, first = []) {
    for (let i = 0; i < count; i++) {
      if (!this.c || this.c.ws.readyState !== WebSocket.OPEN) await this.connect();
      try {
        await this.turn(first[i]);
      } catch (e) {
        if (!(e instanceof Closed) && !/timed out/.test(e.message)) throw e;
        this.counts.cut++;
        await this.connect();
      }
      this.soak.progress++;
      await this.soak.maybeKill();
    }
  }

  async leave() {
    if (this.c && this.c.ws.readyState === WebSocket.OPEN) await this.c.close();
  }
}

// Runs the soak; returns its figures and the problems found (empty: it held).
export async function runSoak({ clients = 8, turns = 100, kills = 2, seed = 1, args = [], rssLimit = 0.1, log = () => {} } = {}) {
  const db = join(tempDir(), 'soak.db');
  const serverArgs = ['--max-tokens', '48', ...args];
  const soak = { server: await startServer(serverArgs, { db }), progress: 0, killsLeft: kills, killAt: [], restarts: 0 };
  const random = rng(seed);
  const people = Array.from({ length: clients }, (_, i) => new Conversation(i, rng(seed * 7919 + i), soak));
  // Phases: the kills fall in the middle of the first two; the third warms up; the last is measured.
  // The warm-up does each kind of turn at least once, so that every pool the server starts on
  // first use (the recogniser's end passes, ...) is running when the baseline is taken.
  const WARM = ['text', 'voice', 'barge', 'disconnect'];
  const p1 = Math.max(1, Math.round(turns * 0.3)), p2 = p1, p3 = Math.max(WARM.length, Math.round(turns * 0.1));
  const p4 = Math.max(1, turns - p1 - p2 - p3);
  if (kills >= 1) soak.killAt.push(Math.round(clients * p1 * (0.4 + 0.2 * random())));
  if (kills >= 2) soak.killAt.push(clients * p1 + Math.round(clients * p2 * (0.4 + 0.2 * random())));
  soak.maybeKill = async () => {
    if (!soak.killAt.length || soak.progress < soak.killAt[0] || soak.killing) return;
    soak.killAt.shift();
    soak.killing = true;
    log(`kill -9 after ${soak.progress} turns, mid-conversation`);
    soak.server.proc.kill('SIGKILL');
    await soak.server.exited;
    soak.server = await startServer(serverArgs, { db });
    soak.restarts++;
    soak.killing = false;
  };
  const problems = [];
  const t0 = performance.now();
  try {
    for (const [name, n, first] of [['first', p1, []], ['second', p2, []], ['warm-up', p3, WARM]]) {
      await Promise.all(people.map((p) => p.run(n, first)));
      log(`${name} phase done: ${soak.progress} turns`);
    }
    await Promise.all(people.map((p) => p.leave()));
    await quiet(soak.server.url);
    const pid = soak.server.proc.pid;
    const baseline = processFigures(pid);
    await Promise.all(people.map((p) => p.run(p4)));
    await Promise.all(people.map((p) => p.leave()));
    await quiet(soak.server.url);
    // Give what closes last (a worker's thread, a socket) a few seconds to go.
    let end = processFigures(pid);
    for (let i = 0; i < 50 && (end.threads !== baseline.threads || end.fds !== baseline.fds); i++) {
      await sleep(100);
      end = processFigures(pid);
    }
    const seconds = (performance.now() - t0) / 1000;

    // The store: every turn a client saw end is there once, as the client saw it.
    let stored = 0, checked = 0;
    for (const p of people) {
      const r = await fetchHistory(soak.server.url, p.sid, p.token);
      if (r.status !== 200) {
        problems.push(`client ${p.n}: history ${r.status}`);
        continue;
      }
      const hist = (await r.json()).turns;
      stored += hist.length;
      const ids = hist.map((t) => t.turn_id);
      if (new Set(ids).size !== ids.length) problems.push(`client ${p.n}: a turn id stored twice: ${ids}`);
      if (ids.some((id, i) => i > 0 && id <= ids[i - 1])) problems.push(`client ${p.n}: turn ids out of order: ${ids}`);
      if (hist.length > p.attempted) problems.push(`client ${p.n}: ${hist.length} turns stored for ${p.attempted} sent`);
      for (const [id, saw] of p.seen) {
        checked++;
        const t = hist.find((x) => x.turn_id === id);
        if (!t) problems.push(`client ${p.n}: turn ${id} (${saw.kind}) is not in the store`);
        else if (saw.kind === 'done' && (t.interrupted || t.assistant !== saw.text)) problems.push(`client ${p.n}: turn ${id} stored as ${JSON.stringify(t.assistant)}${t.interrupted ? ' (interrupted)' : ''}, the client got ${JSON.stringify(saw.text)}`);
        else if (saw.kind === 'interrupted' && !t.interrupted) problems.push(`client ${p.n}: turn ${id} was interrupted but is stored as finished`);
      }
      for (const u of p.unexpected) problems.push(`client ${p.n}: unexpected ${u}`);
    }
    const other = new DatabaseSync(db, { readOnly: true });
    const dup = other.prepare('SELECT session_id, turn_id, COUNT(*) AS n FROM turns GROUP BY session_id, turn_id HAVING n > 1').all();
    other.close();
    if (dup.length) problems.push(`duplicate rows in the store: ${JSON.stringify(dup)}`);
    const rssChange = (end.rssKiB - baseline.rssKiB) / baseline.rssKiB;
    if (rssLimit && Math.abs(rssChange) > rssLimit) problems.push(`RSS ${baseline.rssKiB} KiB after warm-up, ${end.rssKiB} KiB at the end (${(rssChange * 100).toFixed(1)}%)`);
    if (end.threads !== baseline.threads) problems.push(`threads ${baseline.threads} after warm-up, ${end.threads} at the end: ${JSON.stringify(baseline.threadNames)} -> ${JSON.stringify(end.threadNames)}`);
    if (end.fds !== baseline.fds) problems.push(`file descriptors ${baseline.fds} after warm-up, ${end.fds} at the end: ${baseline.fdKinds} -> ${end.fdKinds}`);

    const counts = {};
    for (const p of people) for (const [k, v] of Object.entries(p.counts)) counts[k] = (counts[k] || 0) + v;
    return {
      figures: {
        clients, turns_per_client: turns, turns: soak.progress, seconds: Math.round(seconds), restarts: soak.restarts,
        ...counts, finished_seen: checked, stored, baseline, end, rss_change_pct: Number((rssChange * 100).toFixed(1)),
      },
      problems,
    };
  } finally {
    await Promise.all(people.map((p) => p.leave().catch(() => {})));
    await soak.server.stop();
  }
}
