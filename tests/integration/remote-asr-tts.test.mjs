// Recognition and speech by other servers over OpenAI's REST shapes (--asr-url, --tts-url): a
// second Parley does both for a first one; Debian's whisper-server (whisper.cpp-tools) does the
// recognition with the generated Whisper model and Parley's transcript is its own answer; a
// server that is down gives an error and the session goes on.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { startServer, Client, clips, voiceTurn, wer, repo, readWav, streamPcm, freePort } from '../lib/parley.mjs';

test('a second Parley transcribes and speaks for the first: a spoken turn, its words and its audio', async () => {
  const back = await startServer(['--tts', 'espeak'], { withModel: false });
  const front = await startServer(['--asr-url', back.url, '--tts-url', back.url, '--max-tokens', '24']);
  try {
    const health = await (await fetch(`${front.url}/health`)).json();
    assert.match(health.asr, new RegExp(`remote ${back.url}/v1/audio/transcriptions`));
    const c = await Client.open(front.ws);
    const ready = await c.waitType('ready');
    assert.equal(ready.json.tts, true, 'the remote voice answered its check');
    const t = await voiceTurn(c, clips[1], { realtime: false });
    assert.ok(wer(clips[1].text, t.final.json.text) <= 0.5, t.final.json.text);
    assert.equal(t.done.json.type, 'response_done');
    const chunks = t.msgs.filter((m) => m.json && m.json.type === 'text_chunk');
    const audio = t.msgs.filter((m) => m.binary);
    assert.ok(chunks.some((m) => m.json.has_audio), 'the reply was spoken');
    assert.ok(audio.reduce((n, m) => n + m.binary.length, 0) > 22050, 'at least half a second of audio');
    assert.deepEqual(c.ofType('error'), []);
    await c.close();
  } finally {
    await front.stop();
    await back.stop();
  }
});

const whisperModel = `${repo}/build/test-models/tiny-whisper.bin`;
const haveWhisper = existsSync('/usr/bin/whisper-server') && existsSync(whisperModel);
test('whisper-server transcribes for Parley: the transcript is whisper-server\'s own answer', { skip: haveWhisper ? false : 'no whisper-server or generated Whisper model (run the unit tests first)' }, async () => {
  const port = await freePort();
  const ws = spawn('/usr/bin/whisper-server', ['-m', whisperModel, '--host', '127.0.0.1', '--port', String(port), '-t', '2', '--inference-path', '/v1/audio/transcriptions'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  ws.stderr.on('data', (d) => (log += d));
  const url = `http://127.0.0.1:${port}`;
  try {
    for (let i = 0; ; i++) {
      try {
        await fetch(`${url}/`);
        break;
      } catch {
        if (i > 200) throw new Error(`whisper-server did not start:\n${log}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const s = await startServer(['--asr-url', url, '--tts', 'none', '--max-tokens', '8']);
    try {
      const c = await Client.open(s.ws);
      await c.waitType('ready');
      const t = await voiceTurn(c, clips[0], { realtime: false, tts: false, reply: false });
      // The same 16 kHz audio posted to whisper-server directly.
      const form = new FormData();
      form.append('file', new Blob([readFileSync(clips[0].wav)]), 'clip.wav');
      form.append('response_format', 'json');
      const direct = await (await fetch(`${url}/v1/audio/transcriptions`, { method: 'POST', body: form })).json();
      assert.equal(t.final.json.text, direct.text.trim());
      assert.ok(direct.text.trim().length > 0, 'the random model writes something');
      await c.close();
    } finally {
      await s.stop();
    }
  } finally {
    ws.kill('SIGKILL');
  }
});

test('a recogniser or voice server that is down: an error naming it, text replies, the session goes on', async () => {
  const dead = `http://127.0.0.1:${await freePort()}`;
  const s = await startServer(['--asr-url', dead, '--tts-url', dead, '--max-tokens', '12']);
  try {
    const c = await Client.open(s.ws);
    await c.waitType('ready');
    const { rate, pcm } = readWav(clips[1].wav);
    c.send({ type: 'start', sample_rate: rate, tts: true });
    await streamPcm(c, pcm, rate, { realtime: false });
    c.send({ type: 'stop' });
    const err = await c.waitFor((m) => m.json && m.json.type === 'error' && m.json.code === 'asr_failed');
    assert.match(err.json.message, new RegExp(dead.replace(/[.]/g, '\\.')));
    const from = c.msgs.length;
    c.send({ type: 'text', text: 'Hello there.' });
    const done = await c.waitType('response_done', { from });
    assert.ok(done.json.text.length > 0, 'typed turns still get replies');
    // Without the voice server the reply is text: no chunk has audio, and an error says why.
    const chunks = c.msgs.slice(from).filter((m) => m.json && m.json.type === 'text_chunk');
    assert.ok(chunks.length > 0 && chunks.every((m) => !m.json.has_audio), JSON.stringify(chunks.map((m) => m.json)));
    const ttsErr = c.msgs.find((m) => m.json && m.json.type === 'error' && m.json.code !== 'asr_failed');
    assert.ok(ttsErr, 'an error for the voice');
    assert.equal(ttsErr.json.code, 'tts_unavailable');
    assert.match(ttsErr.json.message, new RegExp(dead.replace(/[.]/g, '\\.')));
    await c.close();
  } finally {
    await s.stop();
  }
});
