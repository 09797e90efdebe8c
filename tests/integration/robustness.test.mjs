// Bad input, vanishing clients, missing models, security: errors are clear, nothing dies.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { startServer, fetchHistory, httpGet, wsUpgrade, Client, clips, voiceTurn, bin, tempDir } from '../lib/parley.mjs';

let srv;
before(async () => {
  srv = await startServer(['--max-sessions', '400']); // room for the 300 idle sessions below
});
after(async () => {
  await srv.stop();
});

test('every kind of bad input gets an error with a code and the session keeps working', async () => {
  const c = await Client.open(srv.ws);
  await c.waitType('ready');
  const expect = async (send, code) => {
    const from = c.msgs.length;
    send();
    const e = await c.waitFor((m) => m.json && m.json.type === 'error', { from });
    assert.equal(e.json.code, code);
    assert.equal(typeof e.json.message, 'string');
  };
  await expect(() => c.sendBinary(Buffer.alloc(640)), 'not_started');
  await expect(() => c.send('{"type": "start", '), 'invalid_json');
  await expect(() => c.send({ type: 'fly' }), 'unknown_type');
  await expect(() => c.send({ type: 'start', sample_rate: 4000 }), 'bad_sample_rate');
  await expect(() => c.send({ type: 'start', sample_rate: 96000 }), 'bad_sample_rate');
  await expect(() => c.send({ type: 'text', text: 'x'.repeat(4097) }), 'text_too_long');
  await expect(() => c.send({ type: 'stop' }), 'not_recording');
  c.send({ type: 'start', sample_rate: 16000 });
  await expect(() => c.sendBinary(Buffer.alloc(641)), 'odd_frame');
  await expect(() => c.sendBinary(Buffer.alloc((1 << 20) + 2)), 'frame_too_large');
  c.send({ type: 'stop' });
  await c.waitFor((m) => m.json && m.json.type === 'transcript' && m.json.is_final);
  await expect(() => c.sendBinary(Buffer.alloc(640)), 'not_recording');
  await expect(() => c.send({ type: 'stop' }), 'not_recording');
  // Still a working session: a spoken turn and a typed one.
  const t = await voiceTurn(c, clips[2]);
  assert.ok(t.final.json.text.length > 0);
  assert.equal(t.done.json.type, 'response_done');
  const from = c.msgs.length;
  c.send({ type: 'text', text: 'Are you still there?' });
  await c.waitType('response_done', { from });
  await c.close();
  const health = await (await fetch(`${srv.url}/health`)).json();
  assert.equal(health.status, 'ok');
});

test('interrupt stops the reply: interrupted, then nothing more of that turn', async () => {
  const c = await Client.open(srv.ws);
  const { session_id: sid, resume_token: token } = (await c.waitType('ready')).json;
  c.send({ type: 'text', text: 'Once upon a time' });
  const first = await c.waitType('text_chunk');
  c.send({ type: 'interrupt' });
  const intr = await c.waitType('interrupted');
  assert.equal(intr.json.turn_id, first.json.turn_id);
  const at = c.msgs.indexOf(intr);
  await new Promise((r) => setTimeout(r, 500));
  const after = c.msgs.slice(at + 1);
  assert.ok(!after.some((m) => m.binary || (m.json && m.json.turn_id === first.json.turn_id)), 'nothing of the old turn after interrupted');
  const h = await (await fetchHistory(srv.url, sid, token)).json();
  // Either the reply finished before the interrupt landed, or it is stored as interrupted.
  if (!c.ofType('response_done').length) assert.equal(h.turns[0].interrupted, true);
  await c.close();
});

test('a client that vanishes mid-reply frees its session; the server stays up', async () => {
  for (let i = 0; i < 3; i++) {
    const c = await Client.open(srv.ws);
    await c.waitType('ready');
    c.send({ type: 'start', sample_rate: 16000 });
    c.sendBinary(Buffer.alloc(3200));
    c.send({ type: 'text', text: 'Tell me a long story.' });
    await c.waitType('text_chunk');
    c.ws.close();
  }
  let sessions = -1;
  for (let i = 0; i < 50 && sessions !== 0; i++) {
    await new Promise((r) => setTimeout(r, 100));
    sessions = (await (await fetch(`${srv.url}/health`)).json()).sessions;
  }
  assert.equal(sessions, 0, 'sessions of vanished clients are freed');
  const c = await Client.open(srv.ws);
  await c.waitType('ready');
  c.send({ type: 'text', text: 'Hello?' });
  await c.waitType('response_done');
  await c.close();
});

test('resume by id after a server restart; SIGTERM keeps every finished turn', async () => {
  const db = join(tempDir(), 'resume.db');
  let s = await startServer([], { db });
  let c = await Client.open(s.ws);
  const { session_id: sid, resume_token: token } = (await c.waitType('ready')).json;
  c.send({ type: 'text', text: 'My name is Tom.' });
  const done1 = await c.waitType('response_done');
  const { code } = await s.stop();
  assert.equal(code, 0);

  s = await startServer([], { db });
  c = await Client.open(`${s.ws}?session_id=${sid}`);
  const ready = await c.waitType('ready');
  assert.equal(ready.json.session_id, sid);
  assert.equal(ready.json.resumed, true);
  assert.equal(ready.json.turns, 1);
  assert.equal(ready.json.resume_token, undefined, 'a resumed session gets no new token');
  c.send({ type: 'text', text: 'What is my name?' });
  await c.waitType('response_done');
  // Resuming with start works too, from a fresh connection.
  const c2 = await Client.open(s.ws);
  await c2.waitType('ready');
  c2.send({ type: 'start', sample_rate: 16000, session_id: sid });
  const r2 = await c2.waitFor((m) => m.json && m.json.type === 'ready' && m.json.resumed);
  assert.equal(r2.json.turns, 2);
  const h = await (await fetchHistory(s.url, sid, token)).json();
  assert.deepEqual(h.turns.map((t) => t.user), ['My name is Tom.', 'What is my name?']);
  assert.equal(h.turns[0].assistant, done1.json.text);
  // An unknown id: a clear error and a new session.
  const c3 = await Client.open(`${s.ws}?session_id=doesnotexist`);
  const e = await c3.waitType('error');
  assert.equal(e.json.code, 'unknown_session');
  await Promise.all([c.close(), c2.close(), c3.close()]);
  await s.stop();
});

test('without a model: the server starts, says so, and still transcribes', async () => {
  const s = await startServer([], { withModel: false });
  const c = await Client.open(s.ws);
  const ready = await c.waitType('ready');
  assert.equal(ready.json.llm, false);
  const t = await voiceTurn(c, clips[0], { realtime: false, reply: false });
  assert.ok(t.final.json.text.length > 10, 'transcript without a model');
  const e = await c.waitType('error');
  assert.equal(e.json.code, 'no_model');
  assert.match(e.json.message, /--model/);
  await c.close();
  await s.stop();
});

test('a missing or corrupt model is a one-line error naming the file, exit code 2', () => {
  const missing = spawnSync(bin, ['serve', '--port', '0', '--model', '/no/such/model.gguf'], { encoding: 'utf8' });
  assert.equal(missing.status, 2);
  assert.equal(missing.stderr.trim().split('\n').length, 1);
  assert.match(missing.stderr, /\/no\/such\/model\.gguf/);
  const bad = join(tempDir(), 'bad.gguf');
  writeFileSync(bad, Buffer.concat([Buffer.from('GGUF'), Buffer.alloc(64, 7)]));
  const corrupt = spawnSync(bin, ['serve', '--port', '0', '--model', bad], { encoding: 'utf8' });
  assert.equal(corrupt.status, 2);
  assert.ok(corrupt.stderr.includes(bad), corrupt.stderr);
});

test('terminal commands: transcribe, say, and clear errors for bad files', () => {
  const t = spawnSync(bin, ['transcribe', clips[0].wav], { encoding: 'utf8' });
  assert.equal(t.status, 0, t.stderr);
  assert.ok(t.stdout.includes('dashwood') || t.stdout.includes('leisure'), t.stdout);
  const out = join(tempDir(), 'say.wav');
  const s = spawnSync(bin, ['say', 'Hello from Parley.', '-o', out], { encoding: 'utf8' });
  assert.equal(s.status, 0, s.stderr);
  assert.ok(existsSync(out) && statSync(out).size > 10000);
  const notwav = join(tempDir(), 'x.wav');
  writeFileSync(notwav, 'not audio');
  for (const f of ['/no/such.wav', notwav]) {
    const r = spawnSync(bin, ['transcribe', f], { encoding: 'utf8' });
    assert.equal(r.status, 2);
    assert.equal(r.stderr.trim().split('\n').length, 1);
    assert.ok(r.stderr.includes(f));
  }
  const chat = spawnSync(bin, ['chat', '--model', join(tempDir(), 'none.gguf')], { input: 'hi\n', encoding: 'utf8' });
  assert.equal(chat.status, 2);
});

test('API key and Origin checks', async () => {
  const s = await startServer(['--api-key', 'sekret', '--allow-origin', 'http://friend.example']);
  const upgrade = async (path, headers) => (await httpGet(s.port, path, { ...wsUpgrade, ...headers })).status;
  assert.equal(await upgrade('/ws', {}), 401);
  assert.equal(await upgrade('/ws?api_key=wrong', {}), 401);
  assert.equal(await upgrade('/ws?api_key=sekret', {}), 101);
  assert.equal(await upgrade('/ws', { Authorization: 'Bearer sekret' }), 101);
  assert.equal(await upgrade('/ws', { 'Sec-WebSocket-Protocol': 'parley, parley-key.sekret' }), 101);
  assert.equal(await upgrade('/ws?api_key=sekret', { Origin: 'http://evil.example' }), 403);
  assert.equal(await upgrade('/ws?api_key=sekret', { Origin: 'http://friend.example' }), 101);
  assert.equal(await upgrade('/ws?api_key=sekret', { Origin: `http://127.0.0.1:${s.port}` }), 101);
  // A browser-style client with the key as a subprotocol gets "parley" back.
  const c = await Client.open(s.ws, ['parley', 'parley-key.sekret']);
  assert.equal(c.ws.protocol, 'parley');
  await c.waitType('ready');
  await c.close();
  assert.equal((await fetch(`${s.url}/sessions/x`)).status, 401);
  assert.equal((await fetch(`${s.url}/health`)).status, 200);
  await s.stop();
  const open = spawnSync(bin, ['serve', '--host', '0.0.0.0', '--port', '0'], { encoding: 'utf8' });
  assert.equal(open.status, 2);
  assert.match(open.stderr, /API key/);
});

test('a client\'s voice is checked by name: unknown ones get unknown_voice and the session goes on', async () => {
  const c = await Client.open(srv.ws);
  await c.waitType('ready');
  const turn = async () => {
    const from = c.msgs.length;
    c.send({ type: 'text', text: 'Tell me a story.' });
    const chunk = await c.waitType('text_chunk', { from });
    await c.waitType('response_done', { from });
    return { chunk, errors: c.msgs.slice(from).filter((m) => m.json && m.json.type === 'error') };
  };
  // Longer than espeak-ng's variant buffer, a path, an unknown variant.
  for (const voice of ['en-us+' + 'A'.repeat(37), 'en-us+' + 'A'.repeat(5000), 'en-us+../../../../etc/passwd', '../../../../etc/passwd', 'en-us+nope']) {
    const from = c.msgs.length;
    c.send({ type: 'start', sample_rate: 16000, tts: true, voice, mode: 'hands_free' });
    const e = await c.waitFor((m) => m.json && m.json.type === 'error', { from });
    assert.equal(e.json.code, 'unknown_voice', voice.slice(0, 40));
    assert.ok(e.json.message.length < 300);
    const t = await turn();
    assert.equal(t.chunk.json.has_audio, true, 'the reply is spoken with the configured voice');
  }
  // A real variant is taken without complaint.
  const from = c.msgs.length;
  c.send({ type: 'start', sample_rate: 16000, tts: true, voice: 'en-us+m3', mode: 'hands_free' });
  const t = await turn();
  assert.equal(t.chunk.json.has_audio, true);
  assert.deepEqual(c.msgs.slice(from).filter((m) => m.json && m.json.type === 'error'), []);
  await c.close();
  assert.equal((await (await fetch(`${srv.url}/health`)).json()).status, 'ok');
});

test('a database file that is no database: the server does not start, and says which file and why', () => {
  const db = join(tempDir(), 'corrupt.db');
  writeFileSync(db, 'x'.repeat(8192));
  const r = spawnSync(bin, ['serve', '--port', '0', '--db', db], { encoding: 'utf8' });
  assert.equal(r.status, 2, r.stderr);
  assert.ok(r.stderr.includes(db), r.stderr);
  assert.match(r.stderr, /not a database/);
  assert.match(r.stderr, /--db-recover/);
});

test('--db-recover moves a database it cannot use aside, says so, and starts a new one', async () => {
  const dir = tempDir();
  const db = join(dir, 'corrupt.db');
  writeFileSync(db, 'x'.repeat(8192));
  const s = await startServer(['--db-recover'], { db });
  try {
    const moved = /moved aside to (\S+),/.exec(s.log());
    assert.ok(moved, s.log());
    assert.equal(readFileSync(moved[1], 'utf8'), 'x'.repeat(8192), 'the old file is kept as it was');
    const c = await Client.open(s.ws);
    const { session_id: sid, resume_token: token } = (await c.waitType('ready')).json;
    c.send({ type: 'text', text: 'Hello.' });
    await c.waitType('response_done');
    await c.close();
    assert.equal((await (await fetchHistory(s.url, sid, token)).json()).turns.length, 1);
  } finally {
    await s.stop();
  }
});

test('--host takes a name and resolves it', async () => {
  const s = await startServer(['--host', 'localhost'], { withModel: false });
  try {
    assert.match(s.log(), /listening on http:\/\/localhost:\d+/);
    const health = await (await fetch(`${s.url}/health`)).json();
    assert.equal(health.status, 'ok');
  } finally {
    await s.stop();
  }
  const bad = spawnSync(bin, ['serve', '--host', 'no-such-host.invalid', '--api-key', 'k', '--port', '0', '--db', ':memory:'], { encoding: 'utf8', timeout: 30000 });
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /cannot listen on no-such-host\.invalid/);
});

// A session is a queue on a shared pool, not a thread: open connections that do nothing cost
// no threads: the server's thread count stays where it was with one session.
test('300 idle WebSockets add no threads to the server', async () => {
  const threads = () => Number(/Threads:\s+(\d+)/.exec(readFileSync(`/proc/${srv.proc.pid}/status`, 'utf8'))[1]);
  const warm = await Client.open(srv.ws); // the pools start with the first session
  await warm.waitType('ready');
  warm.send({ type: 'start', sample_rate: 16000, mode: 'hands_free' });
  warm.sendBinary(Buffer.alloc(640));
  await new Promise((r) => setTimeout(r, 200));
  const before = threads();
  const idle = [];
  for (let i = 0; i < 300; i++) idle.push(Client.open(srv.ws));
  const clients = await Promise.all(idle);
  await Promise.all(clients.map((c) => c.waitType('ready')));
  const during = threads();
  console.log(`server threads: ${before} with one session, ${during} with 301`);
  assert.ok(during - before <= 2, `${during - before} more threads for 300 idle sessions`);
  // And they all still work: past the LLM's 8 places (fewer free ones while sessions of the
  // tests before are still closing) each is told its own place in line; when the others
  // leave, the last in line is admitted and answered.
  await new Promise((r) => setTimeout(r, 300)); // the line settles
  const queued = clients.filter((c) => c.ofType('queued').length > 0 && c.ofType('admitted').length === 0);
  assert.ok(queued.length >= 300 + 1 - 8 - 2, `${queued.length} in line`);
  const place = (c) => c.ofType('queued').at(-1).position;
  const places = queued.map(place).sort((a, b) => a - b);
  assert.deepEqual(places, Array.from({ length: queued.length }, (_, i) => i + 1));
  const last = queued.find((c) => place(c) === queued.length);
  await Promise.all([warm, ...clients].filter((c) => c !== last).map((c) => c.close()));
  await last.waitType('admitted', { timeout: 20000 });
  last.send({ type: 'text', text: 'Hello.' });
  await last.waitType('response_done', { timeout: 60000 });
  await last.close();
});

// Audio files go through libsndfile: FLAC (lossless) gives the WAV's transcript, Ogg Vorbis is
// read, and a file that is no audio gets a clear error.
test('parley transcribe reads FLAC and Ogg as well as WAV', () => {
  const dir = tempDir();
  const wav = clips[1].wav;
  const flac = join(dir, 'clip.flac');
  const ogg = join(dir, 'clip.ogg');
  for (const out of [flac, ogg]) assert.equal(spawnSync('sox', [wav, out]).status, 0, `sox ${out}`);
  const run = (file) => spawnSync(bin, ['transcribe', file], { encoding: 'utf8' });
  const fromWav = run(wav);
  assert.equal(fromWav.status, 0, fromWav.stderr);
  const fromFlac = run(flac);
  assert.equal(fromFlac.status, 0, fromFlac.stderr);
  assert.equal(fromFlac.stdout, fromWav.stdout);
  const fromOgg = run(ogg);
  assert.equal(fromOgg.status, 0, fromOgg.stderr);
  assert.ok(fromOgg.stdout.trim().split(/\s+/).length >= 3, `Ogg transcript: ${fromOgg.stdout}`);
  const junk = join(dir, 'junk.flac');
  writeFileSync(junk, 'this is not audio');
  const bad = run(junk);
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /junk\.flac: unsupported or unreadable audio/);
});
