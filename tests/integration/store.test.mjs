// Durability: a store that refuses writes, a database whose folder is deleted under the server,
// a crash in the middle of a reply, and sessions where nothing was said. Nothing finished is
// lost silently; what cannot be saved is said (to the client, /health, /metrics) and written
// again when the store takes it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, fetchHistory, Client, tempDir, until } from '../lib/parley.mjs';

const { DatabaseSync } = await import('node:sqlite');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));


async function turn(c, text) {
  const from = c.msgs.length;
  c.send({ type: 'text', text });
  return (await c.waitType('response_done', { from, timeout: 30000 })).json;
}

// Text-only replies: no audio playing at the client when the next turn starts (a reply still
// playing would be cut to what was heard, and saved again).
async function textOnly(c) {
  const ready = (await c.waitType('ready')).json;
  c.send({ type: 'start', sample_rate: 16000, tts: false });
  return ready;
}

// Another writer of the server's database: it waits its turn while the server writes (SQLite
// takes one writer at a time) rather than failing at once with SQLITE_BUSY.
function writer(db) {
  const other = new DatabaseSync(db);
  other.exec('PRAGMA busy_timeout = 10000');
  return other;
}

const unsaved = async (url) => Number(/^parley_store_unsaved_turns (\S+)/m.exec(await (await fetch(`${url}/metrics`)).text())[1]);

test('a store that refuses a turn: the client is told, /health says 503 and why, the turn is kept and written when the store takes it again', async () => {
  const db = join(tempDir(), 'parley.db');
  const s = await startServer([], { db });
  try {
    const c = await Client.open(s.ws);
    const { session_id: sid, resume_token: token } = await textOnly(c);
    await turn(c, 'Hello there.');
    // The schema changes under the server: the turns' table vanishes.
    let other = writer(db);
    const schema = other.prepare("SELECT sql FROM sqlite_master WHERE name = 'turns'").get().sql;
    other.exec('DROP TABLE turns');
    other.close();
    const r = await fetchHistory(s.url, sid, token);
    assert.equal(r.status, 500);
    assert.equal((await r.json()).code, 'store_failed');
    const from = c.msgs.length;
    const second = await turn(c, 'Are you still there?');
    const e = await c.waitFor((m) => m.json && m.json.type === 'error', { from });
    assert.equal(e.json.code, 'store_failed');
    assert.match(e.json.message, /kept/);
    const health = await fetch(`${s.url}/health`);
    assert.equal(health.status, 503);
    const h = await health.json();
    assert.equal(h.status, 'failing');
    assert.match(h.store, /no such table/);
    assert.equal(await unsaved(s.url), 1);
    // Everyone else is still served.
    const c2 = await Client.open(s.ws);
    await c2.waitType('ready');
    await turn(c2, 'Hi.');
    // The table comes back: the kept turns are written without anyone asking.
    other = writer(db);
    other.exec(schema);
    other.close();
    await until('the store to take the kept turns', async () => (await unsaved(s.url)) === 0);
    assert.equal((await fetch(`${s.url}/health`)).status, 200);
    const hist = await (await fetchHistory(s.url, sid, token)).json();
    assert.deepEqual(hist.turns.map((t) => [t.turn_id, t.user]), [[second.turn_id, 'Are you still there?']]);
    // Ids go on from there, never reused.
    assert.equal((await turn(c, 'And now?')).turn_id, second.turn_id + 1);
    await c.close();
    await c2.close();
    assert.equal(s.proc.exitCode, null, 'still running');
  } finally {
    await s.stop();
  }
});

test('the database folder deleted while the server runs: noticed within seconds, a new database made, the live history written again', async () => {
  const dir = join(tempDir(), 'store');
  const db = join(dir, 'parley.db');
  let s = await startServer([], { db });
  const c = await Client.open(s.ws);
  const { session_id: sid, resume_token: token } = (await c.waitType('ready')).json;
  try {
    await turn(c, 'My name is Tom.');
    rmSync(dir, { recursive: true, force: true });
    const t0 = Date.now();
    await until('the removal to be noticed', () => /was removed or replaced/.test(s.log()));
    const noticed = Date.now() - t0;
    assert.ok(noticed < 5000, `noticed after ${noticed} ms`);
    await until('the history to be written again', async () => (await fetchHistory(s.url, sid, token)).status === 200);
    await turn(c, 'What is my name?');
    await c.close();
  } finally {
    await s.stop();
  }
  // A restart finds both turns in the new database.
  s = await startServer([], { db });
  try {
    const hist = await (await fetchHistory(s.url, sid, token)).json();
    assert.deepEqual(hist.turns.map((t) => t.user), ['My name is Tom.', 'What is my name?']);
  } finally {
    await s.stop();
  }
});

test('kill -9 in the middle of a reply: every finished turn is kept, the one in flight is marked interrupted', async () => {
  const db = join(tempDir(), 'parley.db');
  let s = await startServer(['--max-tokens', '400'], { db });
  const c = await Client.open(s.ws);
  const { session_id: sid, resume_token: token } = await textOnly(c);
  const first = await turn(c, 'Hello.');
  const from = c.msgs.length;
  c.send({ type: 'text', text: 'Tell me a long story.' });
  await c.waitType('text_chunk', { from });
  s.proc.kill('SIGKILL');
  await s.exited;
  const finished = c.ofType('response_done').length === 2;
  s = await startServer([], { db });
  try {
    const hist = await (await fetchHistory(s.url, sid, token)).json();
    assert.equal(hist.turns.length, 2, JSON.stringify(hist.turns));
    assert.equal(hist.turns[0].assistant, first.text);
    assert.equal(hist.turns[1].user, 'Tell me a long story.');
    // Cut before it ended (it almost always is: the kill follows its first phrase).
    if (!finished) assert.equal(hist.turns[1].interrupted, true);
  } finally {
    await s.stop();
  }
});

test('a session where nothing was said leaves no row; resuming it says unknown_session', async () => {
  const db = join(tempDir(), 'parley.db');
  const s = await startServer([], { db });
  try {
    const ids = [];
    for (let i = 0; i < 5; i++) {
      const c = await Client.open(s.ws);
      ids.push((await c.waitType('ready')).json.session_id);
      await c.close();
    }
    const spoken = await Client.open(s.ws);
    const sid = (await spoken.waitType('ready')).json.session_id;
    await turn(spoken, 'Hi.');
    await spoken.close();
    await sleep(200);
    const other = new DatabaseSync(db, { readOnly: true });
    const rows = other.prepare('SELECT id FROM sessions').all().map((r) => r.id);
    other.close();
    assert.deepEqual(rows, [sid]);
    const c = await Client.open(`${s.ws}?session_id=${ids[0]}`);
    const e = await c.waitType('error');
    assert.equal(e.json.code, 'unknown_session');
    await c.close();
  } finally {
    await s.stop();
  }
});

test('one connection holds a session: a second resume takes it over (session_taken), and racing resumes lose nothing', async () => {
  const db = join(tempDir(), 'parley.db');
  // A small context: each resumed connection evaluates the history's tail afresh.
  const s = await startServer(['--max-tokens', '8', '--ctx', '256'], { db });
  try {
    const a = await Client.open(s.ws);
    const { session_id: sid, resume_token: token } = await textOnly(a);
    await turn(a, 'Turn one.');
    const b = await Client.open(`${s.ws}?session_id=${sid}`);
    const rb = (await b.waitType('ready')).json;
    assert.equal(rb.resumed, true);
    assert.equal(rb.turns, 1);
    const taken = await a.waitFor((m) => m.json && m.json.type === 'error');
    assert.equal(taken.json.code, 'session_taken');
    const closed = await a.closed;
    assert.equal(closed.code, 1008);
    assert.equal(closed.reason, 'session_taken');
    b.send({ type: 'start', sample_rate: 16000, tts: false });
    assert.equal((await turn(b, 'Turn two.')).turn_id, 2);
    await b.close();
    // Two resumes at once, 100 times: one holds the session, the other is told; each round's
    // turn is stored once, under a new id.
    for (let i = 0; i < 100; i++) {
      const pair = await Promise.all([Client.open(`${s.ws}?session_id=${sid}`), Client.open(`${s.ws}?session_id=${sid}`)]);
      const loser = await Promise.race(pair.map((c) => c.waitFor((m) => m.json && m.json.code === 'session_taken', { timeout: 10000 }).then(() => c)));
      const winner = pair.find((c) => c !== loser);
      assert.equal((await winner.waitType('ready')).json.resumed, true);
      winner.send({ type: 'start', sample_rate: 16000, tts: false });
      await turn(winner, `Round ${i}.`);
      await Promise.all(pair.map((c) => c.close()));
    }
    const hist = await (await fetchHistory(s.url, sid, token)).json();
    assert.equal(hist.turns.length, 102);
    assert.deepEqual(hist.turns.map((t) => t.turn_id), Array.from({ length: 102 }, (_, i) => i + 1));
    assert.deepEqual(hist.turns.slice(2).map((t) => t.user), Array.from({ length: 100 }, (_, i) => `Round ${i}.`));
  } finally {
    await s.stop();
  }
});
