// Golden transcripts of the native WebSocket protocol: the message sequences of typed turns
// (with speech and text-only), push-to-talk, hands-free, barge-in (by message and by speech), a
// false start and bad input, as a client sees them.
// The content that does not depend on timing is compared byte for byte (types, texts, chunk ids,
// flags, error codes and messages, audio lengths); times, ids and partial transcripts, which do,
// are replaced by placeholders. A changed protocol fails here first.
//
// To record them again after a deliberate change: PARLEY_GOLDEN_UPDATE=1 node --test this file.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, Client, clips, readWav, streamPcm, repo } from '../lib/parley.mjs';

const dir = join(repo, 'tests', 'golden');
const update = process.env.PARLEY_GOLDEN_UPDATE === '1';

// Values that depend on timing or identity become placeholders; the rest stays as sent.
function normalize(m) {
  if (m.binary) return { binary_bytes: m.binary.length };
  const out = {};
  for (const [k, v] of Object.entries(m.json)) {
    if (k === 'timings') out[k] = '<timings>';
    else if (k === 'session_id') out[k] = '<session>';
    else if (k === 'resume_token') out[k] = '<token>';
    else if (k === 'heard') out[k] = '<heard>'; // where the playout clock was at the cut
    else if (/_ms$/.test(k) || k === 't') out[k] = typeof v === 'number' ? '<ms>' : v;
    else if (k === 'words') out[k] = v.map((w) => ({ text: w.text }));
    else out[k] = v;
  }
  return out;
}

// Partial transcripts come at the recogniser's pace: one placeholder for a run of them.
function sequence(msgs) {
  const seq = [];
  for (const m of msgs) {
    const n = normalize(m);
    if (n.type === 'transcript' && n.is_final === false) {
      if (seq.at(-1)?.type !== 'transcript (partials)') seq.push({ type: 'transcript (partials)' });
      continue;
    }
    seq.push(n);
  }
  return seq;
}

function check(name, msgs) {
  const file = join(dir, `${name}.json`);
  const got = sequence(msgs);
  if (update) {
    mkdirSync(dir, { recursive: true });
    writeFileSync(file, JSON.stringify(got, null, 1) + '\n');
    return;
  }
  assert.ok(existsSync(file), `no golden transcript ${file} (record it with PARLEY_GOLDEN_UPDATE=1)`);
  assert.deepEqual(got, JSON.parse(readFileSync(file, 'utf8')), `protocol changed: ${name}`);
}

// Greedy decoding: the same prompt gives the same reply (on the same llama.cpp build; another
// build's arithmetic may pick other words, and the transcripts are then recorded again).
const greedy = ['--temperature', '0', '--seed', '7', '--max-tokens', '24'];
let srv, energy;
before(async () => {
  srv = await startServer(greedy);
  // The energy detector: a tone is a sound it hears, whatever a speech model makes of it.
  energy = await startServer([...greedy, '--vad', 'energy']);
});
after(async () => {
  await srv.stop();
  await energy.stop();
});

async function session(server = srv) {
  const c = await Client.open(server.ws);
  await c.waitType('ready');
  return c;
}

test('golden: a typed turn, spoken', async () => {
  const c = await session();
  const from = c.msgs.length - 1; // ready included
  c.send({ type: 'text', text: 'Tell me about the cat.' });
  await c.waitType('response_done');
  check('typed-spoken', c.msgs.slice(from));
  await c.close();
});

test('golden: a typed turn, text-only', async () => {
  const c = await session();
  c.send({ type: 'start', sample_rate: 16000, tts: false });
  c.send({ type: 'stop' });
  await c.waitFor((m) => m.json && m.json.type === 'transcript' && m.json.is_final);
  const from = c.msgs.length;
  c.send({ type: 'text', text: 'Tell me about the dog.' });
  await c.waitType('response_done', { from });
  check('typed-text-only', c.msgs.slice(from));
  await c.close();
});

test('golden: push-to-talk', async () => {
  const c = await session();
  const { rate, pcm } = readWav(clips[1].wav);
  const from = c.msgs.length;
  c.send({ type: 'start', sample_rate: rate, tts: true });
  await streamPcm(c, pcm, rate, { realtime: false });
  c.send({ type: 'stop' });
  await c.waitType('response_done', { from, timeout: 60000 });
  check('push-to-talk', c.msgs.slice(from));
  await c.close();
});

test('golden: hands-free', async () => {
  const c = await session();
  const { rate, pcm } = readWav(clips[4].wav);
  const from = c.msgs.length;
  c.send({ type: 'start', sample_rate: rate, tts: true, mode: 'hands_free' });
  await streamPcm(c, Buffer.concat([pcm, Buffer.alloc(rate * 2 * 2)]), rate, { realtime: false });
  await c.waitType('response_done', { from, timeout: 60000 });
  check('hands-free', c.msgs.slice(from));
  await c.close();
});

test('golden: bad input, each with its error, and the session goes on', async () => {
  const c = await session();
  const from = c.msgs.length;
  const bad = [
    () => c.sendBinary(Buffer.alloc(640)),
    () => c.send('{"type": "start", '),
    () => c.send({ type: 'fly' }),
    () => c.send({ type: 'start', sample_rate: 4000 }),
    () => c.send({ type: 'start', sample_rate: '16000' }),
    () => c.send({ type: 'text', text: 'x'.repeat(4097) }),
    () => c.send({ type: 'text', text: '' }),
    () => c.send({ type: 'stop' }),
    () => c.send({ type: 'start', sample_rate: 16000, voice: 'en-us+' + 'A'.repeat(40) }),
  ];
  for (const send of bad) {
    const n = c.msgs.length;
    send();
    await c.waitFor((m) => m.json && m.json.type === 'error', { from: n });
  }
  c.sendBinary(Buffer.alloc(641));
  await c.waitFor((m) => m.json && m.json.code === 'odd_frame', { from });
  c.send({ type: 'stop' });
  await c.waitFor((m) => m.json && m.json.type === 'transcript' && m.json.is_final, { from });
  check('bad-input', c.msgs.slice(from));
  await c.close();
});

// A 220 Hz tone at 16 kHz (amplitude 0: low background noise).
function tone(ms, amplitude) {
  const n = ms * 16;
  const b = Buffer.alloc(n * 2);
  for (let i = 0; i < n; i++) {
    const noise = amplitude ? 0 : ((i * 7919) % 61) - 30;
    b.writeInt16LE(Math.round(amplitude * Math.sin((i * 2 * Math.PI * 220) / 16000)) + noise, i * 2);
  }
  return b;
}

// The reply's audio has gone out and is playing (by the server's playout clock) when the
// client cuts it; where exactly it was is timing, so `heard` is a placeholder.
test('golden: barge-in by message', async () => {
  const c = await session();
  const from = c.msgs.length;
  c.send({ type: 'text', text: 'Tell me about the cat.' });
  await c.waitType('response_done', { from });
  c.send({ type: 'interrupt' });
  await c.waitType('interrupted', { from });
  c.send({ type: 'text', text: 'And the dog?' });
  await c.waitType('response_done', { from: c.msgs.findIndex((m) => m.json?.type === 'interrupted') });
  check('barge-in-message', c.msgs.slice(from));
  await c.close();
});

test('golden: barge-in by speech (hands-free)', async () => {
  const c = await session(energy);
  c.send({ type: 'start', sample_rate: 16000, tts: true, mode: 'hands_free', echo_cancellation: true });
  const from = c.msgs.length;
  c.send({ type: 'text', text: 'Tell me about the cat.' });
  await c.waitType('response_done', { from });
  const { rate, pcm } = readWav(clips[1].wav);
  assert.equal(rate, 16000);
  await streamPcm(c, Buffer.concat([tone(200, 0), pcm, tone(1500, 0)]), rate, { realtime: false });
  const cut = await c.waitType('interrupted', { from });
  await c.waitFor((m) => m.json?.type === 'response_done' && m.json.turn_id !== cut.json.turn_id, { from, timeout: 60000 });
  check('barge-in-speech', c.msgs.slice(from));
  await c.close();
});

// A sound past the barge-in time (96 ms) and short of speech (250 ms) cuts the reply; when it
// proves not to be speech, the reply goes on from where the client stopped (here: the start of
// its first chunk, as the client's playback report says) with the audio already made.
test('golden: a false start, and the reply goes on', async () => {
  const c = await session(energy);
  c.send({ type: 'start', sample_rate: 16000, tts: true, mode: 'hands_free', echo_cancellation: true });
  const from = c.msgs.length;
  c.send({ type: 'text', text: 'Tell me about the cat.' });
  const done = await c.waitType('response_done', { from });
  await streamPcm(c, Buffer.concat([tone(200, 0), tone(190, 8000)]), 16000, { realtime: false });
  await c.waitType('interrupted', { from });
  c.send({ type: 'playback', turn_id: done.json.turn_id, chunk_id: 'chunk_id_0', played_ms: 0 });
  await streamPcm(c, tone(900, 0), 16000, { realtime: false });
  const resumed = await c.waitType('resumed', { from });
  const at = c.msgs.indexOf(resumed);
  await c.waitFor((m) => m.json?.type === 'text_chunk' && m.json.is_final, { from: at });
  await new Promise((r) => setTimeout(r, 200)); // the last chunk's audio
  check('false-start', c.msgs.slice(from));
  await c.close();
});
