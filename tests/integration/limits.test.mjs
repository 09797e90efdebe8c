// Limits, each with its reason: sessions in all and per address (refused before the WebSocket
// opens, with Retry-After), sessions whose client went silent, and malformed HTTP answered
// with its status before the connection closes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { startServer, httpGet, wsUpgrade, Client, clips, readWav, streamPcm, Mic } from '../lib/parley.mjs';

const upgrade = (port) => httpGet(port, '/ws', wsUpgrade);

// Raw bytes to the server; resolves to the status line it answers with ('' when it only closes).
function raw(port, bytes) {
  return new Promise((ok) => {
    const sock = connect(port, '127.0.0.1');
    let got = '';
    sock.on('data', (d) => (got += d.toString('latin1')));
    sock.on('close', () => ok(got.split('\r\n')[0]));
    sock.on('error', () => {});
    sock.write(bytes, () => sock.end());
  });
}

test('--max-sessions and --max-sessions-per-ip: the next connection is refused with 503 or 429 and Retry-After', async () => {
  let s = await startServer(['--max-sessions', '3']);
  try {
    const open = [];
    for (let i = 0; i < 3; i++) {
      const c = await Client.open(s.ws);
      await c.waitType('ready');
      open.push(c);
    }
    const full = await upgrade(s.port);
    assert.equal(full.status, 503);
    assert.equal(full.headers['retry-after'], '5');
    assert.equal(JSON.parse(full.body).code, 'server_full');
    await open.pop().close();
    await new Promise((r) => setTimeout(r, 200));
    const again = await Client.open(s.ws); // a place is free again
    await again.waitType('ready');
    open.push(again);
    for (const c of open) await c.close();
  } finally {
    await s.stop();
  }
  s = await startServer(['--max-sessions-per-ip', '2']);
  try {
    const open = [await Client.open(s.ws), await Client.open(s.ws)];
    await Promise.all(open.map((c) => c.waitType('ready')));
    const more = await upgrade(s.port);
    assert.equal(more.status, 429);
    assert.equal(more.headers['retry-after'], '5');
    assert.equal(JSON.parse(more.body).code, 'too_many_sessions');
    for (const c of open) await c.close();
  } finally {
    await s.stop();
  }
});

test('--idle-timeout: a silent client is told and closed; one that sends audio stays', async () => {
  const s = await startServer(['--idle-timeout', '1']);
  try {
    const silent = await Client.open(s.ws);
    await silent.waitType('ready');
    const talking = await Client.open(s.ws);
    await talking.waitType('ready');
    talking.send({ type: 'start', sample_rate: 16000 });
    const timer = setInterval(() => talking.sendBinary(Buffer.alloc(640)), 200);
    try {
      const e = await silent.waitFor((m) => m.json && m.json.type === 'error', { timeout: 5000 });
      assert.equal(e.json.code, 'idle_timeout');
      const closed = await silent.closed;
      assert.equal(closed.code, 1008);
      assert.equal(closed.reason, 'idle_timeout');
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(talking.ws.readyState, WebSocket.OPEN, 'a client sending audio is not idle');
      assert.equal(talking.ofType('error').length, 0);
    } finally {
      clearInterval(timer);
    }
    await talking.close();
  } finally {
    await s.stop();
  }
});

test('malformed HTTP gets 400, 413 or 431 before the connection closes', async () => {
  const s = await startServer([]);
  try {
    assert.match(await raw(s.port, `GET /${'a'.repeat(1 << 20)} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`), /^HTTP\/1\.1 431/);
    let many = 'GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n';
    for (let i = 0; i < 10000; i++) many += `X-H${i}: v\r\n`;
    assert.match(await raw(s.port, many + '\r\n'), /^HTTP\/1\.1 431/);
    assert.match(await raw(s.port, 'POST /health HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFF\r\n'), /^HTTP\/1\.1 413/);
    assert.match(await raw(s.port, 'HELLO THERE\r\n\r\n'), /^HTTP\/1\.1 400/);
    assert.match(await raw(s.port, 'GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: x\r\n\r\n'), /^HTTP\/1\.1 400/);
    assert.equal((await fetch(`${s.url}/health`)).status, 200, 'and the server goes on');
  } finally {
    await s.stop();
  }
});

test('a message longer than the model\'s context is cut to what fits (text_cut) and answered', async () => {
  const s = await startServer(['--ctx', '512', '--max-tokens', '16']);
  try {
    const c = await Client.open(s.ws);
    await c.waitType('ready');
    c.send({ type: 'text', text: '\u{1F600}'.repeat(1024) }); // 4,096 bytes
    const done = await c.waitType('response_done', { timeout: 30000 });
    assert.ok(done.json.text.length > 0);
    const errors = c.ofType('error');
    assert.deepEqual(errors.map((e) => e.code), ['text_cut']);
    await c.close();
  } finally {
    await s.stop();
  }
});

test('a push-to-talk turn past --max-turn-seconds ends there with its transcript so far (turn_too_long)', async () => {
  const s = await startServer(['--max-turn-seconds', '2', '--max-tokens', '16']);
  try {
    const c = await Client.open(s.ws);
    await c.waitType('ready');
    c.send({ type: 'start', sample_rate: 16000, tts: false });
    const { pcm } = readWav(clips[0].wav); // longer than 2 s
    await streamPcm(c, pcm, 16000, { realtime: false });
    c.send({ type: 'stop' });
    const e = await c.waitFor((m) => m.json && m.json.type === 'error');
    assert.equal(e.json.code, 'turn_too_long');
    const final = await c.waitFor((m) => m.json && m.json.type === 'transcript' && m.json.is_final, { timeout: 20000 });
    assert.ok(final.json.text.length > 0, 'the transcript so far');
    await c.waitType('response_done', { timeout: 30000 });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(c.msgs.filter((m) => m.json && m.json.type === 'transcript' && m.json.is_final).length, 1, 'the stop after it adds no turn');
    const from = c.msgs.length;
    c.send({ type: 'text', text: 'Still there?' });
    await c.waitType('response_done', { from });
    await c.close();
  } finally {
    await s.stop();
  }
});

test('ten minutes of audio in a moment: a burst is taken, the rest refused (audio_too_fast), the session goes on', async () => {
  const s = await startServer(['--max-tokens', '16']);
  try {
    const c = await Client.open(s.ws);
    await c.waitType('ready');
    c.send({ type: 'start', sample_rate: 16000, tts: false });
    const frame = Buffer.alloc(16000 * 2); // 1 s of silence a frame
    for (let i = 0; i < 600; i++) c.sendBinary(frame);
    c.send({ type: 'stop' });
    const e = await c.waitFor((m) => m.json && m.json.type === 'error', { timeout: 20000 });
    assert.equal(e.json.code, 'audio_too_fast');
    const refused = c.ofType('error').filter((x) => x.code === 'audio_too_fast').length;
    assert.ok(refused <= 5, `said once a second, not once a frame (${refused})`);
    await c.waitFor((m) => m.json && m.json.type === 'transcript' && m.json.is_final, { timeout: 60000 });
    const from = c.msgs.length;
    c.send({ type: 'text', text: 'Still there?' });
    await c.waitType('response_done', { from, timeout: 30000 });
    await c.close();
  } finally {
    await s.stop();
  }
});

test('past the LLM\'s slots a session waits in line: told its place, its turns refused (queued), admitted when a place frees', async () => {
  const s = await startServer(['--slots', '2', '--max-tokens', '8']);
  try {
    const open = async () => {
      const c = await Client.open(s.ws);
      await c.waitType('ready');
      return c;
    };
    const a = await open();
    const b = await open();
    const c = await open();
    const d = await open();
    assert.equal(a.ofType('queued').length + b.ofType('queued').length, 0);
    assert.equal((await c.waitType('queued')).json.position, 1);
    assert.equal((await d.waitType('queued')).json.position, 2);
    c.send({ type: 'text', text: 'Hello?' });
    const refused = await c.waitType('error');
    assert.equal(refused.json.code, 'queued');
    assert.match(refused.json.message, /number 1 in line/);
    await a.close();
    await c.waitType('admitted');
    const moved = await d.waitFor((m) => m.json && m.json.type === 'queued' && m.json.position === 1);
    assert.ok(moved);
    const from = c.msgs.length;
    c.send({ type: 'text', text: 'Hello now.' });
    await c.waitType('response_done', { from });
    // One in line that leaves gives its place up: the next moves on.
    const e = await open();
    assert.equal((await e.waitType('queued')).json.position, 2);
    await d.close();
    await e.waitFor((m) => m.json && m.json.type === 'queued' && m.json.position === 1);
    await b.close();
    await e.waitType('admitted');
    await c.close();
    await e.close();
  } finally {
    await s.stop();
  }
});

test('a hands-free turn past --max-turn-seconds ends there: speech_stopped, the transcript so far, a reply', async () => {
  const s = await startServer(['--max-turn-seconds', '2', '--max-tokens', '16', '--speculative-silence-ms', '0']);
  const c = await Client.open(s.ws);
  await c.waitType('ready');
  c.send({ type: 'start', sample_rate: 16000, mode: 'hands_free', tts: false });
  const mic = new Mic(c);
  try {
    await mic.play(readWav(clips[0].wav).pcm); // more than 2 s of speech
    await c.waitType('speech_started', { timeout: 20000 });
    const e = await c.waitFor((m) => m.json && m.json.type === 'error', { timeout: 20000 });
    assert.equal(e.json.code, 'turn_too_long');
    await c.waitType('speech_stopped', { from: c.msgs.indexOf(e), timeout: 5000 }); // the turn ends
    const final = await c.waitFor((m) => m.json && m.json.type === 'transcript' && m.json.is_final, { timeout: 20000 });
    assert.ok(final.json.text.length > 0, 'the transcript so far');
    await c.waitType('response_done', { timeout: 30000 });
  } finally {
    await mic.stop();
    await c.close();
    await s.stop();
  }
});
