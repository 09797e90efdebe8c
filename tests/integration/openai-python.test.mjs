// The same endpoints through Debian's python3-openai (another SDK, another HTTP stack: httpx),
// unchanged: models, chat whole and streamed, speech, a transcription, an error; and its
// realtime client (websockets underneath) through a push-to-talk turn.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { startServer, clips, wer, repo } from '../lib/parley.mjs';

test('python3-openai: models, chat, speech, transcription and an error against Parley', async () => {
  const s = await startServer(['--api-key', 'sk-python']);
  try {
    const out = await new Promise((ok, fail) =>
      execFile('python3', [join(repo, 'tests/clients/openai_rest.py'), `${s.url}/v1`, 'sk-python', clips[1].wav], { timeout: 120000 }, (err, stdout, stderr) => (err ? fail(new Error(stderr || err.message)) : ok(JSON.parse(stdout)))));
    assert.ok(out.models.includes('pocketsphinx'), JSON.stringify(out.models));
    assert.ok(out.chat.length > 0 && out.chat_usage > 0);
    assert.equal(out.chat_stream, out.chat);
    assert.ok(out.speech_seconds > 0.5, `${out.speech_seconds} s`);
    assert.ok(wer(clips[1].text, out.transcript) <= 0.5, out.transcript);
    assert.equal(out.words.map((w) => w.word).join(' '), out.words_text);
    assert.ok(out.words.length > 3 && out.words.every((w, i) => w.start < w.end && (i === 0 || w.start >= out.words[i - 1].end - 1e-9)), JSON.stringify(out.words));
    assert.deepEqual(out.bad_request, { status: 400, param: 'messages' });
  } finally {
    await s.stop();
  }
});

test('python3-openai realtime: a push-to-talk turn over /v1/realtime (its websockets client)', async () => {
  const s = await startServer(['--api-key', 'sk-python']);
  try {
    const out = await new Promise((ok, fail) =>
      execFile('python3', [join(repo, 'tests/clients/openai_realtime.py'), `${s.url}/v1`, 'sk-python', clips[1].wav], { timeout: 120000 }, (err, stdout, stderr) => (err ? fail(new Error(`${stderr || err.message}\n${stdout}`)) : ok(JSON.parse(stdout)))));
    assert.ok(wer(clips[1].text, out.transcript) <= 0.5, out.transcript);
    assert.ok(out.reply.length > 0, JSON.stringify(out));
    assert.ok(out.audio_bytes > 24000, JSON.stringify(out));
    assert.ok(['completed', 'incomplete'].includes(out.status), out.status);
    const order = ['session.created', 'session.updated', 'input_audio_buffer.committed', 'conversation.item.input_audio_transcription.completed', 'response.created', 'response.done'];
    assert.deepEqual(out.events.filter((t) => order.includes(t)), order);
  } finally {
    await s.stop();
  }
});
