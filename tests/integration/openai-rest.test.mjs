// The OpenAI-compatible REST endpoints, driven by the official `openai` npm package, unchanged,
// with only its base URL pointed at Parley: models, chat completions (whole and streamed),
// speech in every format, transcription of a LibriVox clip; and OpenAI-shaped errors for bad
// requests, over plain HTTP and over TLS.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { execFile, execFileSync } from 'node:child_process';
import { join } from 'node:path';
import OpenAI, { toFile } from 'openai';
import { startServer, clips, wer, tempDir, repo, readWav } from '../lib/parley.mjs';

let s, client;
before(async () => {
  s = await startServer(['--api-key', 'sk-test-key']);
  client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'sk-test-key', maxRetries: 0 });
});
after(() => s.stop());

test('models: the loaded engines', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.ok(ids.some((id) => /stories260K/i.test(id)), ids.join(', '));
  assert.ok(ids.includes('pocketsphinx'), ids.join(', '));
});

test('chat completions, whole and streamed: the same greedy reply, usage, finish reason', async () => {
  const ask = { model: 'any', messages: [{ role: 'system', content: 'You tell stories.' }, { role: 'user', content: 'Once upon a time' }], max_tokens: 24, temperature: 0 };
  const whole = await client.chat.completions.create(ask);
  assert.equal(whole.object, 'chat.completion');
  assert.match(whole.id, /^chatcmpl-/);
  const text = whole.choices[0].message.content;
  assert.ok(text.length > 0);
  assert.equal(whole.choices[0].message.role, 'assistant');
  assert.ok(['stop', 'length'].includes(whole.choices[0].finish_reason));
  assert.ok(whole.usage.prompt_tokens > 0 && whole.usage.completion_tokens > 0);
  assert.equal(whole.usage.total_tokens, whole.usage.prompt_tokens + whole.usage.completion_tokens);

  const stream = await client.chat.completions.create({ ...ask, stream: true, stream_options: { include_usage: true } });
  let streamed = '', finish = null, usage = null, chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      streamed += c.delta.content || '';
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert.equal(streamed, text);
  assert.equal(finish, whole.choices[0].finish_reason);
  assert.ok(chunks > 3, `${chunks} chunks`);
  assert.equal(usage.completion_tokens, whole.usage.completion_tokens);

  // A stop string ends the reply before it, as OpenAI's do.
  const word = text.trim().split(/\s+/)[1];
  const stopped = await client.chat.completions.create({ ...ask, stop: [word] });
  assert.equal(stopped.choices[0].finish_reason, 'stop');
  assert.ok(!stopped.choices[0].message.content.includes(word), stopped.choices[0].message.content);
  assert.ok(text.startsWith(stopped.choices[0].message.content));
});

const weather = { type: 'function', function: { name: 'get_weather', description: 'The weather in a city', parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 12 }, unit: { enum: ['celsius', 'fahrenheit'] } }, required: ['city', 'unit'] } } };
const timer = { type: 'function', function: { name: 'set_timer', parameters: { type: 'object', properties: { minutes: { type: 'integer' } }, required: ['minutes'] } } };
const ask = { role: 'user', content: 'What is the weather in Oslo?' };

test('function calling: a required or named tool_choice gets a valid call (whole and streamed); the tool\'s result goes back for the reply', async () => {
  const r = await client.chat.completions.create({ model: 'any', messages: [ask], tools: [weather, timer], tool_choice: 'required', temperature: 0, max_tokens: 120 });
  const choice = r.choices[0];
  assert.equal(choice.finish_reason, 'tool_calls');
  assert.equal(choice.message.content, null);
  const call = choice.message.tool_calls[0];
  assert.match(call.id, /^call_/);
  assert.equal(call.type, 'function');
  assert.ok(['get_weather', 'set_timer'].includes(call.function.name));
  const args = JSON.parse(call.function.arguments);
  if (call.function.name === 'get_weather') {
    assert.ok(typeof args.city === 'string' && args.city.length <= 12 && ['celsius', 'fahrenheit'].includes(args.unit), call.function.arguments);
  } else {
    assert.ok(Number.isInteger(args.minutes), call.function.arguments);
  }
  // Named, streamed: the call comes in tool_calls deltas, no content.
  const stream = await client.chat.completions.create({ model: 'any', messages: [ask], tools: [weather, timer], tool_choice: { type: 'function', function: { name: 'set_timer' } }, stream: true, max_tokens: 120, temperature: 0.8, seed: 3 });
  let content = '', name = '', argText = '', finish = null;
  for await (const chunk of stream) {
    for (const c of chunk.choices) {
      content += c.delta.content || '';
      for (const t of c.delta.tool_calls || []) {
        assert.equal(t.index, 0);
        name += t.function?.name || '';
        argText += t.function?.arguments || '';
      }
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert.equal(finish, 'tool_calls');
  assert.equal(content, '');
  assert.equal(name, 'set_timer');
  assert.ok(Number.isInteger(JSON.parse(argText).minutes), argText);
  // The result goes back as a tool message; the model answers (tools still offered, its choice).
  const next = await client.chat.completions.create({ model: 'any', messages: [ask, choice.message, { role: 'tool', tool_call_id: call.id, content: '{"temperature": 3}' }], tools: [weather, timer], max_tokens: 16, temperature: 0 });
  assert.ok(['stop', 'length', 'tool_calls'].includes(next.choices[0].finish_reason));
  assert.ok(next.usage.prompt_tokens > r.usage.prompt_tokens, 'the call and its result are in the prompt');
  // tool_choice none: no tools offered, a plain reply.
  const none = await client.chat.completions.create({ model: 'any', messages: [ask], tools: [weather], tool_choice: 'none', max_tokens: 8, temperature: 0 });
  assert.equal(none.choices[0].message.tool_calls, undefined);
  assert.ok(none.usage.prompt_tokens < r.usage.prompt_tokens);
});

test('function calling: malformed tools and choices are 400s naming the field', async () => {
  const bad = async (body, param) => {
    const e = await client.chat.completions.create({ model: 'any', messages: [ask], max_tokens: 4, ...body }).then(() => null, (x) => x);
    assert.ok(e, JSON.stringify(body));
    assert.equal(e.status, 400, JSON.stringify(body));
    assert.equal(e.param, param, `${JSON.stringify(body)}: ${e.message}`);
  };
  await bad({ tools: [{ type: 'function', function: { name: 'has space' } }] }, 'tools');
  await bad({ tools: [{ type: 'retrieval' }] }, 'tools');
  await bad({ tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'spaceship' } } }] }, 'tools');
  await bad({ tools: [weather, weather] }, 'tools');
  await bad({ tools: [weather], tool_choice: { type: 'function', function: { name: 'nope' } } }, 'tool_choice');
  await bad({ tool_choice: 'required' }, 'tool_choice');
  await bad({ tools: [weather], tool_choice: 'sometimes' }, 'tool_choice');
  await bad({ messages: [{ role: 'tool', content: 'x' }] }, 'messages[0].tool_call_id');
});

test('speech: every format holds the same speech, as long and as loud as the WAV', async () => {
  const input = 'Hello there, how are you today?';
  const get = async (format) => Buffer.from(await (await client.audio.speech.create({ model: 'tts-1', voice: 'alloy', input, response_format: format })).arrayBuffer());
  const wav = await get('wav');
  assert.equal(wav.toString('latin1', 0, 4), 'RIFF');
  const rate = wav.readUInt32LE(24);
  const ref = wav.subarray(44);
  const seconds = ref.length / 2 / rate;
  assert.ok(seconds > 1, `${seconds} s`);
  const rms = (b) => Math.sqrt(Array.from({ length: b.length >> 1 }, (_, i) => b.readInt16LE(2 * i) ** 2).reduce((x, y) => x + y, 0) / (b.length >> 1));
  // Each request speaks anew (espeak-ng's length varies by a few samples), so the formats are
  // compared by length and level; decoded by sox, not by the server's own code.
  const dir = tempDir();
  const decode = (bytes, ext, r) => {
    const f = join(dir, `speech.${ext}`);
    writeFileSync(f, bytes);
    return execFileSync('sox', [f, '-t', 'raw', '-e', 'signed', '-b', '16', '-c', '1', '-r', String(r), '-']);
  };
  const magic = { mp3: null, flac: 'fLaC', opus: 'OggS' };
  for (const format of ['flac', 'mp3', 'opus']) {
    const b = await get(format);
    if (magic[format]) assert.equal(b.toString('latin1', 0, 4), magic[format], format);
    else assert.ok(b.toString('latin1', 0, 3) === 'ID3' || (b[0] === 0xff && (b[1] & 0xe0) === 0xe0), 'mp3 frame sync');
    const pcm = decode(b, format, rate);
    const s = pcm.length / 2 / rate;
    assert.ok(Math.abs(s - seconds) < 0.1, `${format}: ${s} s against ${seconds} s`);
    const db = 20 * Math.log10(rms(pcm) / rms(ref));
    assert.ok(Math.abs(db) < 3, `${format}: ${db.toFixed(1)} dB against the WAV`);
  }
  // Streamed as server-sent events: a delta per phrase, base64 of its audio, then done.
  const sse = await fetch(`${s.url}/v1/audio/speech`, { method: 'POST', headers: { Authorization: 'Bearer sk-test-key', 'Content-Type': 'application/json' }, body: JSON.stringify({ input: 'One phrase. And another one after it.', voice: 'alloy', response_format: 'pcm', stream_format: 'sse' }) });
  assert.equal(sse.status, 200);
  assert.match(sse.headers.get('content-type'), /text\/event-stream/);
  const events = (await sse.text()).split('\n\n').filter((x) => x.startsWith('data: ')).map((x) => JSON.parse(x.slice(6)));
  const audio = events.filter((e) => e.type === 'speech.audio.delta').map((e) => Buffer.from(e.audio, 'base64'));
  assert.ok(audio.length >= 2 && audio.every((b) => b.length > 4800 && b.length % 2 === 0), JSON.stringify(events.map((e) => e.type)));
  assert.equal(events.at(-1).type, 'speech.audio.done');
  // pcm: raw s16le at 24 kHz, as OpenAI's; the same speech resampled.
  const raw = await get('pcm');
  assert.ok(Math.abs(raw.length / 2 / 24000 - seconds) < 0.05, `pcm ${raw.length / 48000} s vs wav ${seconds} s`);
  // pcm needs no header: it goes out phrase by phrase as it is spoken (chunked, no length ahead).
  const chunked = await fetch(`${s.url}/v1/audio/speech`, { method: 'POST', headers: { Authorization: 'Bearer sk-test-key', 'Content-Type': 'application/json' }, body: JSON.stringify({ input: 'One phrase. And another one after it.', voice: 'alloy', response_format: 'pcm' }) });
  assert.equal(chunked.status, 200);
  assert.equal(chunked.headers.get('content-length'), null);
  const body = Buffer.from(await chunked.arrayBuffer());
  const sseBytes = audio.reduce((n, b) => n + b.length, 0);
  assert.ok(body.length % 2 === 0 && Math.abs(body.length - sseBytes) < 2400, `${body.length} bytes against the SSE deltas' ${sseBytes}`);
});

test('transcription of a LibriVox clip: the reference within the recogniser\'s error, json and text', async () => {
  const clip = clips[0];
  const r = await client.audio.transcriptions.create({ model: 'whisper-1', file: await toFile(readFileSync(clip.wav), 'clip.wav') });
  const e = wer(clip.text, r.text);
  assert.ok(e <= 0.5, `WER ${e}: ${r.text}`);
  assert.equal(r.usage.type, 'duration');
  const plain = await client.audio.transcriptions.create({ model: 'whisper-1', file: await toFile(readFileSync(clip.wav), 'clip.wav'), response_format: 'text' });
  // The recogniser adapts to the audio it hears, so a second pass may differ in a word.
  assert.ok(wer(clip.text, plain) <= 0.5, plain);
  assert.equal(typeof plain, 'string');
});

test('segments: verbose_json, srt and vtt give the times of each stretch of speech', async () => {
  // Two clips with two seconds of silence between them: two segments at least, the second
  // starting after the silence.
  const a = readWav(clips[0].wav), b = readWav(clips[2].wav);
  assert.equal(a.rate, b.rate);
  const gap = Buffer.alloc(a.rate * 2 * 2);
  const pcm = Buffer.concat([a.pcm, gap, b.pcm]);
  const wav = Buffer.alloc(44);
  wav.write('RIFF', 0); wav.writeUInt32LE(36 + pcm.length, 4); wav.write('WAVEfmt ', 8);
  wav.writeUInt32LE(16, 16); wav.writeUInt16LE(1, 20); wav.writeUInt16LE(1, 22); wav.writeUInt32LE(a.rate, 24);
  wav.writeUInt32LE(a.rate * 2, 28); wav.writeUInt16LE(2, 32); wav.writeUInt16LE(16, 34); wav.write('data', 36); wav.writeUInt32LE(pcm.length, 40);
  const file = Buffer.concat([wav, pcm]);
  const aEnd = a.pcm.length / 2 / a.rate, bStart = aEnd + 2;
  const v = await client.audio.transcriptions.create({ model: 'whisper-1', file: await toFile(file, 'two.wav'), response_format: 'verbose_json' });
  assert.equal(v.task, 'transcribe');
  assert.ok(Math.abs(v.duration - (bStart + b.pcm.length / 2 / b.rate)) < 0.01, `${v.duration}`);
  assert.ok(v.segments.length >= 2, JSON.stringify(v.segments));
  for (const seg of v.segments) assert.ok(seg.start < seg.end && seg.end <= v.duration + 0.01, JSON.stringify(seg));
  const before = v.segments.filter((seg) => seg.end <= aEnd + 0.6), afterGap = v.segments.filter((seg) => seg.start >= bStart - 0.4);
  assert.equal(before.length + afterGap.length, v.segments.length, `a segment inside the silence: ${JSON.stringify(v.segments)}`);
  assert.ok(wer(clips[0].text + ' ' + clips[2].text, v.text) <= 0.5, v.text);
  const srt = await client.audio.transcriptions.create({ model: 'whisper-1', file: await toFile(file, 'two.wav'), response_format: 'srt' });
  assert.match(srt, /^1\n\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}\n\S/);
  const vtt = await client.audio.transcriptions.create({ model: 'whisper-1', file: await toFile(file, 'two.wav'), response_format: 'vtt' });
  assert.match(vtt, /^WEBVTT\n\n\d\d:\d\d:\d\d\.\d{3} --> /);
  assert.equal(v.words, undefined, 'words only when asked for');
  // Word times: each word where its clip is, none in the silence, in order, the same words as
  // the text.
  const w = await client.audio.transcriptions.create({ model: 'whisper-1', file: await toFile(file, 'two.wav'), response_format: 'verbose_json', timestamp_granularities: ['word'] });
  assert.equal(w.segments, undefined, 'segments only when asked for (or nothing is)');
  assert.ok(w.words.length >= 4, JSON.stringify(w.words));
  assert.equal(w.words.map((x) => x.word).join(' '), w.text);
  let last = 0;
  for (const x of w.words) {
    assert.ok(x.start < x.end && x.start >= last - 1e-9 && x.end <= w.duration + 0.01, JSON.stringify(x));
    assert.ok(x.end <= aEnd + 0.6 || x.start >= bStart - 0.4, `a word inside the silence: ${JSON.stringify(x)}`);
    last = x.end;
  }
  assert.ok(w.words.some((x) => x.end <= aEnd + 0.6) && w.words.some((x) => x.start >= bStart - 0.4), JSON.stringify(w.words));
  const both = await client.audio.transcriptions.create({ model: 'whisper-1', file: await toFile(file, 'two.wav'), response_format: 'verbose_json', timestamp_granularities: ['word', 'segment'] });
  assert.deepEqual(both.words, w.words);
  assert.deepEqual(both.segments, v.segments);
  await assert.rejects(client.audio.transcriptions.create({ model: 'whisper-1', file: await toFile(file, 'two.wav'), response_format: 'json', timestamp_granularities: ['word'] }), (e) => e.status === 400 && e.param === 'timestamp_granularities');
  await assert.rejects(client.audio.transcriptions.create({ model: 'whisper-1', file: await toFile(file, 'two.wav'), response_format: 'verbose_json', timestamp_granularities: ['phoneme'] }), (e) => e.status === 400 && e.param === 'timestamp_granularities' && /phoneme/.test(e.message));
  // Streamed: a delta per stretch of speech, then the whole text.
  const events = [];
  for await (const e of await client.audio.transcriptions.create({ model: 'whisper-1', file: await toFile(file, 'two.wav'), stream: true })) events.push(e);
  const deltas = events.filter((e) => e.type === 'transcript.text.delta');
  assert.ok(deltas.length >= 2, JSON.stringify(events));
  assert.equal(events.at(-1).type, 'transcript.text.done');
  assert.equal(deltas.map((e) => e.delta).join(''), events.at(-1).text);
  assert.equal(events.at(-1).text, v.text);
});

test('bad requests get OpenAI-shaped errors with the right status, and the server goes on', async () => {
  const expect = async (p, status, code, param) => {
    await assert.rejects(p, (err) => {
      assert.equal(err.status, status, err.message);
      if (code !== undefined) assert.equal(err.code, code);
      if (param !== undefined) assert.equal(err.param, param);
      assert.ok(err.error && typeof err.error.message === 'string' && err.error.type, JSON.stringify(err.error));
      return true;
    });
  };
  await expect(client.chat.completions.create({ model: 'x', messages: [] }), 400, null, 'messages');
  await expect(client.chat.completions.create({ model: 'x', messages: [{ role: 'wizard', content: 'hi' }] }), 400, null, 'messages[0].role');
  await expect(client.chat.completions.create({ model: 'x', messages: [{ role: 'user', content: 'hi' }], temperature: 7 }), 400, null, 'temperature');
  await expect(client.chat.completions.create({ model: 'x', messages: [{ role: 'user', content: 'hi' }], stream: 'yes' }), 400, null, 'stream');
  await expect(client.chat.completions.create({ model: 'x', messages: [{ role: 'user', content: 'Once upon a time there was a dog. '.repeat(400) }] }), 400, 'context_length_exceeded', 'messages');
  await expect(client.audio.speech.create({ model: 'tts-1', voice: '../../etc/passwd', input: 'hi' }), 400, null, 'voice');
  await expect(client.audio.speech.create({ model: 'tts-1', voice: 'alloy', input: 'x'.repeat(5000) }), 400, 'string_too_long', 'input');
  await expect(client.audio.speech.create({ model: 'tts-1', voice: 'alloy', input: 'hi', response_format: 'aiff' }), 400, null, 'response_format');
  await expect(client.audio.transcriptions.create({ model: 'whisper-1', file: await toFile(Buffer.from('not audio at all'), 'a.wav') }), 400, 'invalid_file_format', 'file');
  await expect(client.audio.translations.create({ model: 'whisper-1', file: await toFile(readFileSync(clips[0].wav), 'clip.wav') }), 400, 'unsupported');
  const bad = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'wrong', maxRetries: 0 });
  await expect(bad.models.list(), 401, 'invalid_api_key');
  // Raw: malformed JSON, an unknown route, a wrong method, an upload over the limit.
  const raw = (path, init) => fetch(`${s.url}${path}`, { ...init, headers: { Authorization: 'Bearer sk-test-key', ...(init && init.headers) } });
  let r = await raw('/v1/chat/completions', { method: 'POST', body: '{"messages": [', headers: { 'Content-Type': 'application/json' } });
  assert.equal(r.status, 400);
  assert.equal((await r.json()).error.type, 'invalid_request_error');
  r = await raw('/v1/nothing', {});
  assert.equal(r.status, 404);
  assert.equal((await r.json()).error.code, 'unknown_url');
  r = await raw('/v1/chat/completions', {});
  assert.equal(r.status, 405);
  r = await raw('/v1/audio/transcriptions', { method: 'POST', body: Buffer.alloc(26 << 20), headers: { 'Content-Type': 'multipart/form-data; boundary=x' } }).catch((e) => e);
  if (!(r instanceof Error)) {
    assert.equal(r.status, 413);
    assert.equal((await r.json()).error.code, 'request_too_large');
  }
  // Still serving.
  assert.ok((await client.chat.completions.create({ model: 'x', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4 })).choices[0].message.content !== undefined);
});

test('a chat completion while voice sessions hold every slot runs beside them, and the line they wait in is untouched', async () => {
  const t = await startServer(['--slots', '1']);
  try {
    const { Client } = await import('../lib/parley.mjs');
    const holder = await Client.open(t.ws);
    await holder.waitType('ready');
    const waiting = await Client.open(t.ws);
    assert.equal((await waiting.waitType('queued')).json.position, 1);
    const c = new OpenAI({ baseURL: `${t.url}/v1`, apiKey: 'none', maxRetries: 0 });
    const r = await c.chat.completions.create({ model: 'x', messages: [{ role: 'user', content: 'Hello' }], max_tokens: 8 });
    assert.ok(r.choices[0].message.content.length > 0);
    // The session in line is still first in line, and gets the slot when the holder leaves.
    await holder.close();
    await waiting.waitType('admitted');
    await waiting.close();
  } finally {
    await t.stop();
  }
});

test('over TLS: the SDK in a process trusting the self-signed certificate (NODE_EXTRA_CA_CERTS)', async () => {
  const dir = tempDir();
  const t = await startServer(['--tls', 'self-signed', '--tls-dir', join(dir, 'tls')]);
  try {
    const code = `
      import OpenAI from 'openai';
      const c = new OpenAI({ baseURL: process.argv[1], apiKey: 'none', maxRetries: 0 });
      const r = await c.chat.completions.create({ model: 'x', messages: [{ role: 'user', content: 'Hello' }], max_tokens: 8 });
      console.log(JSON.stringify({ text: r.choices[0].message.content }));`;
    const out = await new Promise((ok, fail) => execFile(process.execPath, ['--input-type=module', '-e', code, `https://localhost:${t.port}/v1`], { cwd: repo, env: { ...process.env, NODE_EXTRA_CA_CERTS: join(dir, 'tls', 'cert.pem') } }, (err, stdout, stderr) => (err ? fail(new Error(stderr)) : ok(stdout))));
    assert.equal(typeof JSON.parse(out).text, 'string');
  } finally {
    await t.stop();
  }
});
