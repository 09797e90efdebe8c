// The voice pipeline end to end against a real `parley serve` with stories260K, PocketSphinx
// and espeak-ng: real recorded speech in, text and audio out.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, fetchHistory, Client, clips, voiceTurn, wer } from '../lib/parley.mjs';

let srv;
before(async () => {
  srv = await startServer();
});
after(async () => {
  const { code } = await srv.stop();
  assert.equal(code, 0, 'SIGTERM ends the server cleanly');
});

// The original design's six fields, with their types, on every chunk; audio after has_audio.
function checkChunks(msgs, { audio }) {
  const chunks = [];
  for (let i = 0; i < msgs.length; i++) {
    const m = msgs[i];
    if (m.binary) {
      const prev = msgs[i - 1];
      assert.ok(prev && prev.json && prev.json.type === 'text_chunk' && prev.json.has_audio, 'binary only right after a has_audio chunk');
      continue;
    }
    if (m.json.type !== 'text_chunk') continue;
    const c = m.json;
    chunks.push(c);
    assert.equal(typeof c.chunk_id, 'string');
    assert.equal(typeof c.text, 'string');
    assert.equal(typeof c.has_audio, 'boolean');
    assert.equal(typeof c.is_final, 'boolean');
    assert.equal(typeof c.processing_time_ms, 'number');
    assert.equal(typeof c.turn_id, 'number');
    if (c.has_audio) {
      const next = msgs[i + 1];
      assert.ok(next && next.binary, `audio follows chunk ${c.chunk_id}`);
      assert.ok(next.binary.length > 0 && next.binary.length % 2 === 0, 'non-empty, even-length PCM');
    }
  }
  assert.ok(chunks.length >= 1, 'at least one text_chunk');
  chunks.slice(0, -1).forEach((c) => assert.equal(c.is_final, false));
  assert.equal(chunks.at(-1).is_final, true, 'the last chunk is final');
  if (audio) assert.ok(chunks.some((c) => c.has_audio), 'some chunk has audio');
  else assert.ok(chunks.every((c) => !c.has_audio), 'no chunk has audio');
  return chunks;
}

test('a spoken turn: transcript within WER 0.5, streamed chunks with audio, then a second turn with history', async () => {
  const c = await Client.open(srv.ws);
  const ready = await c.waitType('ready');
  assert.equal(ready.json.audio_format.encoding, 'pcm_s16le');
  const sid = ready.json.session_id;

  const t1 = await voiceTurn(c, clips[0]);
  const hyp = t1.final.json.text;
  const w = wer(clips[0].text, hyp);
  console.log(`# transcript: "${hyp}" (WER ${w.toFixed(2)})`);
  assert.ok(w <= 0.5, `WER ${w} > 0.5 for "${hyp}"`);
  assert.ok(t1.msgs.some((m) => m.json && m.json.type === 'transcript' && !m.json.is_final), 'partial transcripts while speaking');
  checkChunks(t1.msgs, { audio: true });
  assert.equal(t1.done.json.type, 'response_done');
  const tm = t1.done.json.timings;
  for (const k of ['transcript_ms', 'first_token_ms', 'first_text_ms', 'first_audio_ms', 'total_ms'])
    assert.equal(typeof tm[k], 'number', `timing ${k}`);
  // Push-to-talk: what the user waits is from the release (stop) to the first audio.
  assert.equal(tm.speech_end_to_audio_ms, tm.first_audio_ms);
  console.log(`# turn 1 timings (ms after stop): ${JSON.stringify(tm)}`);

  const t2 = await voiceTurn(c, clips[1]);
  checkChunks(t2.msgs, { audio: true });
  const tm2 = t2.done.json.timings;
  assert.ok(tm2.cached_tokens > 0, 'the second prompt starts with the first turn (KV cache reused)');
  assert.ok(tm2.prompt_tokens > tm.prompt_tokens, 'the second prompt holds the first turn');

  const hist = await (await fetchHistory(srv.url, sid, ready.json.resume_token)).json();
  assert.equal(hist.turns.length, 2);
  assert.equal(hist.turns[0].user, hyp);
  assert.equal(hist.turns[0].assistant, t1.done.json.text);
  assert.equal(hist.turns[1].user, t2.final.json.text);
  assert.equal(typeof hist.turns[0].timings.first_audio_ms, 'number');
  await c.close();
});

test('text-only mode: the same chunk stream, has_audio false, no binary messages', async () => {
  const c = await Client.open(srv.ws);
  await c.waitType('ready');
  c.send({ type: 'start', sample_rate: 16000, tts: false });
  c.send({ type: 'stop' });
  await c.waitFor((m) => m.json && m.json.type === 'transcript' && m.json.is_final);
  c.send({ type: 'text', text: 'Tell me a story about a cat.' });
  await c.waitType('response_done');
  assert.ok(!c.msgs.some((m) => m.binary));
  checkChunks(c.msgs, { audio: false });
  await c.close();
});

test('a TTS failure falls back to text and the session goes on', async () => {
  const c = await Client.open(srv.ws);
  await c.waitType('ready');
  c.send({ type: 'start', sample_rate: 16000, tts: true, rate: 1000 }); // espeak-ng takes 80..450
  const err = await c.waitType('error');
  assert.equal(err.json.code, 'tts_unavailable');
  c.send({ type: 'stop' });
  c.send({ type: 'text', text: 'Hello there.' });
  await c.waitType('response_done');
  checkChunks(c.msgs, { audio: false });
  // A working voice brings audio back.
  const from = c.msgs.length;
  c.send({ type: 'start', sample_rate: 16000, tts: true, voice: 'en-us' });
  c.send({ type: 'stop' });
  c.send({ type: 'text', text: 'And now?' });
  await c.waitType('response_done', { from });
  checkChunks(c.msgs.slice(from), { audio: true });
  await c.close();
});

test('four sessions at once, each with its own conversation', async () => {
  const clients = await Promise.all([0, 1, 2, 3].map(() => Client.open(srv.ws)));
  const readies = await Promise.all(clients.map(async (c) => (await c.waitType('ready')).json));
  const ids = readies.map((r) => r.session_id);
  assert.equal(new Set(ids).size, 4);
  const turns = await Promise.all(clients.map((c, i) => voiceTurn(c, clips[i])));
  turns.forEach((t, i) => {
    const w = wer(clips[i].text, t.final.json.text);
    assert.ok(w <= 0.5, `session ${i} transcript "${t.final.json.text}" (WER ${w})`);
    checkChunks(t.msgs, { audio: true });
  });
  for (let i = 0; i < 4; i++) {
    const h = await (await fetchHistory(srv.url, ids[i], readies[i].resume_token)).json();
    assert.equal(h.turns.length, 1);
    assert.equal(h.turns[0].user, turns[i].final.json.text);
  }
  await Promise.all(clients.map((c) => c.close()));
});

test('/metrics: Prometheus text with turn-stage histograms and errors by code', async () => {
  const c = await Client.open(srv.ws);
  await c.waitType('ready');
  c.sendBinary(Buffer.alloc(640)); // not_started
  await c.waitType('error');
  c.send({ type: 'text', text: 'Hello.' });
  await c.waitType('response_done');
  await c.close();
  const text = await (await fetch(`${srv.url}/metrics`)).text();
  const value = (re) => {
    const m = re.exec(text);
    assert.ok(m, `missing ${re}`);
    return Number(m[1]);
  };
  assert.ok(value(/^parley_turns_total (\d+)/m) >= 1);
  assert.ok(value(/^parley_errors_total\{code="not_started"\} (\d+)/m) >= 1);
  assert.ok(value(/^parley_turn_latency_ms_count\{stage="first_text"\} (\d+)/m) >= 1);
  assert.ok(value(/^parley_turn_latency_ms_bucket\{stage="first_audio",le="\+Inf"\} (\d+)/m) >= 1);
  assert.ok(value(/^parley_engine_load_ms\{engine="llm"\} ([\d.]+)/m) > 0);
  assert.ok(value(/^parley_speech_end_to_audio_ms_count\{stage="speech_end_to_first_audio"\} (\d+)/m) >= 1);
  assert.match(text, /# TYPE parley_turn_latency_ms histogram/);
});
