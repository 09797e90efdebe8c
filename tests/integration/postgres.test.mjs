// The PostgreSQL store (--store postgresql://...), against a real PostgreSQL server started here
// (Debian's, a temporary data directory, a free loopback port, an unprivileged user): the
// schema made from an empty database and brought up from the previous version, a newer schema
// refused, a turn durable before response_done, a restart of PostgreSQL during a conversation
// (the turn is kept, said, and written when the server is back: never lost silently), two nodes
// on one store, and text PostgreSQL's text type cannot hold.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { startServer, fetchHistory, Client, bin, until } from '../lib/parley.mjs';
import { startPostgres } from '../lib/postgres.mjs';



async function turn(c, text) {
  const from = c.msgs.length;
  c.send({ type: 'text', text });
  return (await c.waitType('response_done', { from, timeout: 30000 })).json;
}

async function open(s, sid) {
  const c = await Client.open(sid ? `${s.ws}?session_id=${sid}` : s.ws);
  const ready = (await c.waitType('ready')).json;
  c.send({ type: 'start', sample_rate: 16000, tts: false });
  return { c, ready };
}

const unsaved = async (url) => Number(/^parley_store_unsaved_turns (\S+)/m.exec(await (await fetch(`${url}/metrics`)).text())[1]);

let pg;
before(async () => {
  pg = await startPostgres();
});
after(async () => {
  await pg?.stop();
});

// A database of its own for each test.
let dbs = 0;
function database() {
  const name = `t${++dbs}`;
  pg.sql(`CREATE DATABASE ${name}`, 'postgres');
  return { url: pg.url.replace(/\/parley$/, `/${name}`), sql: (q) => pg.sql(q, name) };
}

test('an empty database gets the schema; every finished turn is in PostgreSQL before response_done', async () => {
  const db = database();
  const s = await startServer(['--store', db.url]);
  try {
    // The start line names the store (its password, if any, hidden).
    await until('the whole start line', () => /store=postgresql:\/\/parley@127\.0\.0\.1:\d+\/t\d+\)/.test(s.log()));
    assert.equal(db.sql('SELECT version FROM parley_schema'), '3');
    assert.equal(db.sql("SELECT string_agg(column_name, ',' ORDER BY column_name) FROM information_schema.columns WHERE table_name = 'sessions'"), 'created_ms,holder,id,token_sha256');
    const { c, ready } = await open(s);
    for (const text of ['Hello there.', 'Tell me about the sea.', 'And the boats?']) {
      const done = await turn(c, text);
      // Read by another connection the moment response_done arrives: already committed.
      const row = db.sql(`SELECT user_text, length(reply_text) > 0, interrupted FROM turns WHERE session_id = '${ready.session_id}' AND turn_id = ${done.turn_id}`);
      assert.equal(row, `${text}|t|f`);
    }
    const hist = await (await fetchHistory(s.url, ready.session_id, ready.resume_token)).json();
    assert.deepEqual(hist.turns.map((t) => t.user), ['Hello there.', 'Tell me about the sea.', 'And the boats?']);
    assert.ok(hist.turns.every((t) => t.timings && typeof t.timings === 'object'));
    await c.close();
  } finally {
    await s.stop();
  }
  assert.match(s.log(), /stopped; 3 turns stored/);
});

test('a database at the previous schema is brought up to date and its conversations resume; a newer one is refused', async () => {
  const db = database();
  // Version 1: sessions without the resume token's hash.
  db.sql(`CREATE TABLE parley_schema (version integer NOT NULL);
    INSERT INTO parley_schema VALUES (1);
    CREATE TABLE sessions (id text PRIMARY KEY, created_ms bigint NOT NULL);
    CREATE TABLE turns (session_id text NOT NULL REFERENCES sessions(id), turn_id bigint NOT NULL, user_text text NOT NULL, reply_text text NOT NULL, interrupted boolean NOT NULL, timings text NOT NULL, created_ms bigint NOT NULL, PRIMARY KEY (session_id, turn_id));
    INSERT INTO sessions VALUES ('0123456789abcdef0123456789abcdef', 1700000000000);
    INSERT INTO turns VALUES ('0123456789abcdef0123456789abcdef', 1, 'What is your name?', 'I am a little cat.', false, '{}', 1700000000000);`);
  const s = await startServer(['--store', db.url, '--api-key', 'k']);
  try {
    assert.equal(db.sql('SELECT version FROM parley_schema'), '3');
    assert.equal(db.sql("SELECT count(*) FROM information_schema.columns WHERE table_name = 'sessions' AND column_name IN ('token_sha256', 'holder')"), '2');
    // The old session resumes with its turn and goes on from it.
    const c = await Client.open(`${s.ws}?session_id=0123456789abcdef0123456789abcdef&api_key=k`);
    const ready = (await c.waitType('ready')).json;
    assert.equal(ready.resumed, true);
    assert.equal(ready.turns, 1);
    c.send({ type: 'start', sample_rate: 16000, tts: false });
    const done = await turn(c, 'And your friend?');
    assert.equal(done.turn_id, 2);
    const h = await fetch(`${s.url}/sessions/0123456789abcdef0123456789abcdef`, { headers: { Authorization: 'Bearer k' } });
    assert.deepEqual((await h.json()).turns.map((t) => t.user), ['What is your name?', 'And your friend?']);
    await c.close();
  } finally {
    await s.stop();
  }
  // A schema from a newer Parley: nothing is touched, the server does not start, and says why.
  db.sql('UPDATE parley_schema SET version = 99');
  const r = spawnSync(bin, ['serve', '--port', '0', '--store', db.url], { encoding: 'utf8', timeout: 30000 });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /schema is version 99, newer than this Parley's \(3\)/);
  assert.match(r.stderr, /PostgreSQL at postgresql:\/\/parley@127\.0\.0\.1/);
  assert.equal(db.sql('SELECT count(*) FROM turns'), '2');
});

test('two nodes starting together on an empty database migrate it once', async () => {
  const db = database();
  const [a, b] = await Promise.all([startServer(['--store', db.url]), startServer(['--store', db.url])]);
  try {
    assert.equal(db.sql('SELECT version FROM parley_schema'), '3');
    assert.equal(db.sql('SELECT count(*) FROM parley_schema'), '1');
    // A conversation started on one node resumes on the other with its whole history.
    const one = await open(a);
    await turn(one.c, 'Hello there.');
    await turn(one.c, 'What a nice day.');
    await one.c.close();
    const two = await open(b, one.ready.session_id);
    assert.equal(two.ready.resumed, true);
    assert.equal(two.ready.turns, 2);
    assert.equal((await turn(two.c, 'Goodbye.')).turn_id, 3);
    const hist = await (await fetchHistory(a.url, one.ready.session_id, one.ready.resume_token)).json();
    assert.deepEqual(hist.turns.map((t) => t.user), ['Hello there.', 'What a nice day.', 'Goodbye.']);
    await two.c.close();
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
});

test('a session resumed on another node: the node that had it writes nothing more, and its client is told (session_taken)', async () => {
  const db = database();
  const [a, b] = await Promise.all([startServer(['--store', db.url]), startServer(['--store', db.url])]);
  try {
    const one = await open(a);
    await turn(one.c, 'Hello there.');
    // The client's network changed: it resumed on node b while node a still holds the old
    // connection (it has not noticed yet).
    const two = await open(b, one.ready.session_id);
    assert.equal(two.ready.turns, 1);
    const mine = await turn(two.c, 'I am on the other node now.');
    // Node a runs a turn on the stale connection: the store refuses it, the connection ends.
    const from = one.c.msgs.length;
    one.c.send({ type: 'text', text: 'A late turn on the old node.' });
    const e = await one.c.waitFor((m) => m.json && m.json.type === 'error' && m.json.code === 'session_taken', { from });
    assert.match(e.json.message, /another connection resumed this session/);
    await one.c.closed;
    assert.match(a.log(), /was resumed by another connection: \d+ turn\(s\) from this one are not written/);
    assert.equal(db.sql(`SELECT string_agg(turn_id || ':' || user_text, ',' ORDER BY turn_id) FROM turns WHERE session_id = '${one.ready.session_id}'`),
      `1:Hello there.,${mine.turn_id}:I am on the other node now.`);
    assert.equal((await turn(two.c, 'Still here?')).turn_id, mine.turn_id + 1);
    await two.c.close();
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
});

test('PostgreSQL restarts during a conversation: a turn finished while it is down is kept, said, and written when it is back; none is lost', async () => {
  const db = database();
  const s = await startServer(['--store', db.url]);
  try {
    const { c, ready } = await open(s);
    await turn(c, 'Hello there.');
    // A restart between two turns is not even noticed: the connection is made again.
    await pg.restart();
    const from = c.msgs.length;
    await turn(c, 'Are you still there?');
    assert.deepEqual(c.ofType('error', from), []);
    assert.equal(db.sql(`SELECT count(*) FROM turns WHERE session_id = '${ready.session_id}'`), '2');
    // Down while a turn ends (an immediate shutdown, as a crash): the client is told, the turn
    // is kept, /health says why; the conversation goes on.
    await pg.stopServer('SIGQUIT');
    const from2 = c.msgs.length;
    const third = await turn(c, 'The store is away now.');
    const e = await c.waitFor((m) => m.json && m.json.type === 'error', { from: from2 });
    assert.equal(e.json.code, 'store_failed');
    assert.match(e.json.message, /kept/);
    const health = await fetch(`${s.url}/health`);
    assert.equal(health.status, 503);
    assert.match((await health.json()).store, /PostgreSQL at postgresql:\/\/parley@127\.0\.0\.1:\d+\/t\d+/);
    const fourth = await turn(c, 'And another one.');
    assert.equal(await unsaved(s.url), 2);
    // Back: the kept turns are written in order without anyone asking, and /health recovers.
    await pg.start();
    await until('the kept turns to be written', async () => (await unsaved(s.url)) === 0, 30000);
    await until('/health to recover', async () => (await fetch(`${s.url}/health`)).status === 200);
    assert.equal(db.sql(`SELECT string_agg(turn_id::text, ',' ORDER BY turn_id) FROM turns WHERE session_id = '${ready.session_id}'`),
      `1,2,${third.turn_id},${fourth.turn_id}`);
    await c.close();
  } finally {
    await s.stop();
  }
});

test('/health recovers by itself when PostgreSQL is back, with no session writing', async () => {
  const db = database();
  const s = await startServer(['--store', db.url]);
  try {
    const { c } = await open(s);
    await pg.stopServer('SIGINT');
    await turn(c, 'Nobody stores this now.');
    await c.close(); // the last try fails too: the turn is lost, and said in the log
    assert.equal((await fetch(`${s.url}/health`)).status, 503);
    await until('the log to say the turn is lost', async () => /did not take; they are lost/.test(s.log()));
    await pg.start();
    await until('/health to recover', async () => (await fetch(`${s.url}/health`)).status === 200);
    assert.match(s.log(), /PostgreSQL at .* answers again/);
  } finally {
    await pg.start().catch(() => {}); // when the test failed while it was down
    await s.stop();
  }
});

test('text PostgreSQL cannot hold (a NUL byte) is stored without it, and the session goes on', async () => {
  const db = database();
  const s = await startServer(['--store', db.url]);
  try {
    const { c, ready } = await open(s);
    const from = c.msgs.length;
    await turn(c, 'null\u0000byte and ünïcödé 🐈');
    assert.deepEqual(c.ofType('error', from), []);
    assert.equal(db.sql(`SELECT user_text FROM turns WHERE session_id = '${ready.session_id}'`), 'nullbyte and ünïcödé 🐈');
    await c.close();
  } finally {
    await s.stop();
  }
});

test('a store that cannot be reached, or a URL that is not PostgreSQL: the server does not start and says why, with no password in the message', () => {
  const down = spawnSync(bin, ['serve', '--port', '0', '--store', 'postgresql://someone:s3cret@127.0.0.1:1/x'], { encoding: 'utf8', timeout: 30000 });
  assert.notEqual(down.status, 0);
  assert.match(down.stderr, /PostgreSQL at postgresql:\/\/someone:\*\*\*@127\.0\.0\.1:1\/x: cannot connect/);
  assert.doesNotMatch(down.stderr + down.stdout, /s3cret/);
  const file = spawnSync(bin, ['serve', '--port', '0', '--store', '/tmp/parley.db'], { encoding: 'utf8', timeout: 30000 });
  assert.notEqual(file.status, 0);
  assert.match(file.stderr, /--store takes a postgresql:\/\/ URL \(an SQLite file is --db FILE\)/);
  const both = spawnSync(bin, ['serve', '--port', '0', '--store', pg.url, '--db-recover'], { encoding: 'utf8', timeout: 30000 });
  assert.notEqual(both.status, 0);
  assert.match(both.stderr, /--db-recover moves an SQLite file aside/);
});
