// The OpenAI Realtime API (GET /v1/realtime), driven by the official `openai` npm package,
// unchanged (OpenAIRealtimeWS over wss:, verifying the server's self-signed certificate):
// spoken turns with server VAD at real-time pace and with push-to-talk commits, barge-in and
// client truncation (the history keeps the words heard), out-of-band and text responses,
// G.711 audio; and for every malformed event an `error` event after which the session goes on.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { execFile, execFileSync } from 'node:child_process';
import { join } from 'node:path';
import OpenAI from 'openai';
import { OpenAIRealtimeWS } from 'openai/realtime/ws';
import { startServer, clips, wer, tempDir, repo, Client, httpGet, wsUpgrade } from '../lib/parley.mjs';

const KEY = 'sk-realtime-test';
let s, ca, certFile, client;

before(async () => {
  const dir = tempDir();
  s = await startServer(['--api-key', KEY, '--tls', 'self-signed', '--tls-dir', join(dir, 'tls')]);
  certFile = join(dir, 'tls', 'cert.pem');
  ca = readFileSync(certFile);
  client = new OpenAI({ apiKey: KEY, baseURL: `https://localhost:${s.port}/v1`, maxRetries: 0 });
});
after(() => s.stop());

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// A response that ran to its end: completed, or cut at its token limit (the test model rarely
// stops by itself).
const finished = (r) => r.status === 'completed' || (r.status === 'incomplete' && r.status_details.reason === 'max_output_tokens');

// A clip as 16-bit mono PCM at `rate` (converted by sox, not by the server).
function clipPcm(clip, rate = 24000) {
  return execFileSync('sox', [clip.wav, '-t', 'raw', '-e', 'signed', '-b', '16', '-c', '1', '-r', String(rate), '-']);
}

// An SDK connection that keeps every server event and waits for them.
async function connect(session) {
  const rt = new OpenAIRealtimeWS({ model: 'parley-local', options: { ca } }, client);
  const c = { rt, events: [], errors: [], waiters: [] };
  rt.on('event', (e) => {
    c.events.push(e);
    c.waiters = c.waiters.filter((w) => !w());
  });
  rt.on('error', (e) => c.errors.push(e));
  c.waitFor = (pred, { from = 0, timeout = 60000 } = {}) => new Promise((ok, fail) => {
    const check = () => {
      for (let i = from; i < c.events.length; i++) if (pred(c.events[i])) { clearTimeout(timer); ok(c.events[i]); return true; }
      return false;
    };
    const timer = setTimeout(() => fail(new Error('timed out; got: ' + c.events.map((e) => e.type).join(', '))), timeout);
    if (!check()) c.waiters.push(check);
  });
  c.waitType = (type, opts) => c.waitFor((e) => e.type === type, opts);
  c.ofType = (type, from = 0) => c.events.slice(from).filter((e) => e.type === type);
  c.send = (e) => rt.send(e);
  await new Promise((ok, fail) => { rt.socket.on('open', ok); rt.socket.on('error', fail); });
  await c.waitType('session.created');
  if (session) {
    const n = c.events.length;
    c.send({ type: 'session.update', session: { type: 'realtime', ...session } });
    await c.waitFor((e) => e.type === 'session.updated' || e.type === 'error', { from: n });
  }
  return c;
}

// Appends PCM in 20 ms events, at real-time pace or at once.
async function append(c, pcm, rate = 24000, { realtime = true, bytesPerSample = 2 } = {}) {
  const frame = (rate / 50) * bytesPerSample;
  const t0 = performance.now();
  for (let i = 0, n = 0; i < pcm.length; i += frame, n++) {
    c.send({ type: 'input_audio_buffer.append', audio: pcm.subarray(i, i + frame).toString('base64') });
    if (realtime) {
      const wait = t0 + (n + 1) * 20 - performance.now();
      if (wait > 0) await sleep(wait);
    }
  }
}

const audioBytes = (c, responseId) => c.ofType('response.output_audio.delta').filter((e) => e.response_id === responseId).reduce((n, e) => n + Buffer.from(e.delta, 'base64').length, 0);
const history = async (sessionObjectId) => {
  const r = await fetch(`http://127.0.0.1:${s.port}/sessions/${sessionObjectId.replace(/^sess_/, '')}`, { headers: { Authorization: `Bearer ${KEY}` } });
  assert.equal(r.status, 200);
  return (await r.json()).turns;
};

test('server VAD: a LibriVox clip at real-time pace gives the events in order, its transcript, and a spoken reply in 24 kHz PCM', async () => {
  // Pauses inside the clip's sentence are not the end of the turn.
  const c = await connect({ instructions: 'You tell stories.', audio: { input: { turn_detection: { type: 'server_vad', silence_duration_ms: 1500 } } } });
  const created = c.ofType('session.created')[0].session;
  assert.equal(created.type, 'realtime');
  assert.equal(created.audio.input.format.rate, 24000);
  assert.equal(created.audio.input.turn_detection.type, 'server_vad');
  const clip = clips[1];
  await append(c, clipPcm(clip));
  await append(c, Buffer.alloc(24000 * 2 * 2.5)); // 2.5 s of silence after the speech
  const done = await c.waitType('response.done');
  const types = c.events.map((e) => e.type);
  const order = ['input_audio_buffer.speech_started', 'input_audio_buffer.speech_stopped', 'input_audio_buffer.committed', 'conversation.item.added', 'conversation.item.input_audio_transcription.completed', 'response.created', 'response.output_item.added', 'response.content_part.added', 'response.output_audio_transcript.delta', 'response.output_audio.delta', 'response.output_audio.done', 'response.output_audio_transcript.done', 'response.content_part.done', 'response.output_item.done', 'response.done'];
  let at = -1;
  for (const t of order) {
    const i = types.indexOf(t, at + 1);
    assert.ok(i > at, `${t} after ${order[order.indexOf(t) - 1]}: ${types.join(', ')}`);
    at = i;
  }
  const ids = new Set(c.events.map((e) => e.event_id));
  assert.equal(ids.size, c.events.length, 'every event_id is unique');
  const transcript = c.ofType('conversation.item.input_audio_transcription.completed')[0];
  assert.ok(wer(clip.text, transcript.transcript) <= 0.5, transcript.transcript);
  const committed = c.ofType('input_audio_buffer.committed')[0];
  assert.equal(transcript.item_id, committed.item_id);
  const started = c.ofType('input_audio_buffer.speech_started')[0];
  const stopped = c.ofType('input_audio_buffer.speech_stopped')[0];
  assert.ok(stopped.audio_end_ms - started.audio_start_ms > 2000, JSON.stringify([started, stopped]));

  assert.ok(finished(done.response), JSON.stringify(done.response.status_details));
  assert.ok(done.response.usage.output_tokens > 0);
  const item = done.response.output[0];
  assert.equal(item.role, 'assistant');
  const text = c.ofType('response.output_audio_transcript.delta').map((e) => e.delta).join('');
  assert.ok(text.length > 0);
  assert.equal(item.content[0].transcript, text);
  assert.equal(c.ofType('response.output_audio_transcript.done')[0].transcript, text);
  // Its audio: 24 kHz 16-bit PCM, as long as speech of that many words can be (1-10 words a second).
  const seconds = audioBytes(c, done.response.id) / 2 / 24000;
  const nwords = text.split(/\s+/).filter(Boolean).length;
  assert.ok(seconds > nwords / 10 && seconds < nwords + 2, `${seconds} s for ${nwords} words`);
  // The conversation's history (the model's next prompt) has the turn.
  const turns = await history(created.id);
  assert.equal(turns.length, 1);
  assert.equal(turns[0].user, transcript.transcript);
  assert.deepEqual(c.errors, []);
  c.rt.close();
});

test('push to talk (turn_detection null): append, commit, response.create; the reply follows the transcript', async () => {
  const c = await connect({ audio: { input: { turn_detection: null, format: { type: 'audio/pcm', rate: 16000 } } } });
  assert.equal(c.ofType('session.updated')[0].session.audio.input.turn_detection, null);
  const clip = clips[0];
  const from = c.events.length;
  await append(c, clipPcm(clip, 16000), 16000, { realtime: false });
  c.send({ type: 'input_audio_buffer.commit' });
  c.send({ type: 'response.create' });
  const done = await c.waitType('response.done', { from });
  const types = c.events.slice(from).map((e) => e.type);
  assert.ok(!types.includes('input_audio_buffer.speech_started'), 'no detector in push-to-talk');
  assert.ok(types.indexOf('input_audio_buffer.committed') < types.indexOf('conversation.item.input_audio_transcription.completed'));
  assert.ok(types.indexOf('conversation.item.input_audio_transcription.completed') < types.indexOf('response.created'));
  const transcript = c.ofType('conversation.item.input_audio_transcription.completed', from)[0].transcript;
  assert.ok(wer(clip.text, transcript) <= 0.5, transcript);
  assert.ok(finished(done.response));
  const turns = await history(c.ofType('session.created')[0].session.id);
  assert.equal(turns[0].user, transcript);
  // A commit with nothing appended is an error; the session goes on.
  c.send({ type: 'input_audio_buffer.commit', event_id: 'ev-empty' });
  const err = await c.waitType('error', { from });
  assert.equal(err.error.code, 'input_audio_buffer_commit_empty');
  assert.equal(err.error.event_id, 'ev-empty');
  c.rt.close();
});

test('typed items, response.create, out-of-band responses with their own instructions, text output, and response.cancel', async () => {
  const c = await connect({ output_modalities: ['text'], instructions: 'You tell stories.' });
  c.send({ type: 'conversation.item.create', item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Once upon a time' }] } });
  await c.waitType('conversation.item.done');
  c.send({ type: 'response.create', response: { metadata: { purpose: 'story' } } });
  const done = await c.waitType('response.done');
  assert.ok(finished(done.response));
  assert.deepEqual(done.response.metadata, { purpose: 'story' });
  assert.deepEqual(done.response.output_modalities, ['text']);
  const text = c.ofType('response.output_text.delta').map((e) => e.delta).join('');
  assert.ok(text.length > 0);
  assert.equal(c.ofType('response.output_text.done')[0].text, text);
  assert.equal(c.ofType('response.output_audio.delta').length, 0);
  const sid = c.ofType('session.created')[0].session.id;
  assert.equal((await history(sid)).length, 1);

  // Out of band: its own instructions and input; not in the conversation.
  let from = c.events.length;
  c.send({ type: 'response.create', response: { conversation: 'none', instructions: 'Say one word.', metadata: { topic: 'side' }, input: [{ type: 'message', role: 'user', content: [{ type: 'input_text', text: 'The dog' }] }], max_output_tokens: 8 } });
  const side = await c.waitType('response.done', { from });
  assert.equal(side.response.conversation_id, null);
  assert.deepEqual(side.response.metadata, { topic: 'side' });
  assert.ok(['completed', 'incomplete'].includes(side.response.status));
  assert.ok(side.response.usage.output_tokens <= 8);
  assert.equal(c.ofType('conversation.item.added', from).length, 0, 'no item joins the conversation');
  assert.equal((await history(sid)).length, 1);

  // A long reply, cancelled: response.done says cancelled by the client.
  from = c.events.length;
  c.send({ type: 'conversation.item.create', item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Tell me a long story about a cat.' }] } });
  c.send({ type: 'response.create', response: { max_output_tokens: 4096 } });
  await c.waitType('response.output_text.delta', { from });
  c.send({ type: 'response.cancel' });
  const cancelled = await c.waitType('response.done', { from });
  assert.equal(cancelled.response.status, 'cancelled');
  assert.equal(cancelled.response.status_details.reason, 'client_cancelled');
  // A second response while one is going is refused, as OpenAI's is.
  from = c.events.length;
  c.send({ type: 'response.create', response: { max_output_tokens: 4096 } });
  await c.waitType('response.created', { from });
  c.send({ type: 'response.create', event_id: 'ev-second' });
  const busy = await c.waitType('error', { from });
  assert.equal(busy.error.code, 'conversation_already_has_active_response');
  c.send({ type: 'response.cancel' });
  await c.waitType('response.done', { from });
  c.rt.close();
});

test('truncation: the client cuts the reply at audio_end_ms; the item and the model\'s history keep the words heard by then', async () => {
  const c = await connect({ instructions: 'You tell stories.' });
  c.send({ type: 'conversation.item.create', item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Once upon a time' }] } });
  c.send({ type: 'response.create' });
  const done = await c.waitType('response.done');
  const item = done.response.output[0];
  const full = item.content[0].transcript;
  const ms = Math.floor(audioBytes(c, done.response.id) / 2 / 24);
  assert.ok(ms > 2000, `${ms} ms of audio`);
  // Past the end: an error naming audio_end_ms.
  c.send({ type: 'conversation.item.truncate', item_id: item.id, content_index: 0, audio_end_ms: ms + 1000, event_id: 'ev-past' });
  const past = await c.waitType('error');
  assert.equal(past.error.param, 'audio_end_ms');
  assert.equal(past.error.event_id, 'ev-past');
  const cut = 1200;
  c.send({ type: 'conversation.item.truncate', item_id: item.id, content_index: 0, audio_end_ms: cut });
  const truncated = await c.waitType('conversation.item.truncated');
  assert.equal(truncated.audio_end_ms, cut);
  c.send({ type: 'conversation.item.retrieve', item_id: item.id });
  const got = (await c.waitType('conversation.item.retrieved')).item;
  const heard = got.content[0].transcript;
  assert.ok(heard.length > 0 && heard.length < full.length, `heard "${heard}" of "${full}"`);
  assert.ok(full.replace(/\s+/g, ' ').startsWith(heard.replace(/\s+/g, ' ')), `"${heard}" begins "${full}"`);
  // About as many words as 1.2 s of speech holds (espeak-ng speaks ~2-4 words a second).
  const n = heard.split(/\s+/).length;
  assert.ok(n >= 1 && n <= 8, `${n} words in ${cut} ms: ${heard}`);
  const turns = await history(c.ofType('session.created')[0].session.id);
  assert.equal(turns[0].assistant.replace(/\s+/g, ' '), heard.replace(/\s+/g, ' '));
  assert.equal(turns[0].interrupted, true);
  c.rt.close();
});

test('barge-in: speech over a playing reply cuts it; the item is truncated where the user came in, and the history keeps those words', async () => {
  const c = await connect({ instructions: 'You tell stories.' });
  c.send({ type: 'conversation.item.create', item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Once upon a time' }] } });
  c.send({ type: 'response.create' });
  const first = await c.waitType('response.output_audio.delta');
  await sleep(1500); // the client plays the reply for 1.5 s, then the user speaks
  const from = c.events.length;
  const pcm = clipPcm(clips[2]);
  await append(c, pcm.subarray(0, 24000 * 2 * 3));
  const truncated = await c.waitType('conversation.item.truncated', { from: 0 });
  assert.equal(truncated.item_id, first.item_id);
  assert.ok(truncated.audio_end_ms > 1000 && truncated.audio_end_ms < 5000, `${truncated.audio_end_ms} ms`);
  assert.ok(c.ofType('input_audio_buffer.speech_started', from).length === 1);
  c.send({ type: 'conversation.item.retrieve', item_id: first.item_id });
  const heard = (await c.waitType('conversation.item.retrieved')).item.content[0].transcript;
  const turns = await history(c.ofType('session.created')[0].session.id);
  assert.equal(turns[0].assistant.replace(/\s+/g, ' '), heard.replace(/\s+/g, ' '));
  assert.equal(turns[0].interrupted, true);
  c.rt.close();
});

test('function calling: a required tool_choice makes the model call with valid arguments; the output and response.create continue with a spoken reply; the history has both', async () => {
  const weather = { type: 'function', name: 'get_weather', description: 'The weather in a city', parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 12 }, unit: { enum: ['celsius', 'fahrenheit'] } }, required: ['city', 'unit'] } };
  const c = await connect({ instructions: 'You help.', tools: [weather], tool_choice: 'required' });
  assert.deepEqual(c.ofType('session.updated')[0].session.tools, [weather]);
  c.send({ type: 'conversation.item.create', item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'What is the weather in Oslo?' }] } });
  c.send({ type: 'response.create' });
  const done = await c.waitType('response.done');
  const call = c.ofType('response.function_call_arguments.done')[0];
  assert.equal(call.name, 'get_weather');
  const args = JSON.parse(call.arguments);
  assert.ok(typeof args.city === 'string' && args.city.length <= 12 && ['celsius', 'fahrenheit'].includes(args.unit), call.arguments);
  assert.equal(c.ofType('response.function_call_arguments.delta').map((e) => e.delta).join(''), call.arguments);
  assert.equal(done.response.output.length, 1);
  assert.equal(done.response.output[0].type, 'function_call');
  assert.equal(done.response.output[0].call_id, call.call_id);
  assert.equal(c.ofType('response.output_audio.delta').length, 0, 'a call is not spoken');
  // The client runs the function; its output and a response.create get the spoken answer.
  const from = c.events.length;
  c.send({ type: 'conversation.item.create', item: { type: 'function_call_output', call_id: call.call_id, output: JSON.stringify({ temperature: 3 }) } });
  c.send({ type: 'response.create', response: { tool_choice: 'none' } });
  const next = await c.waitType('response.done', { from });
  assert.ok(finished(next.response));
  assert.equal(next.response.output[0].type, 'message');
  assert.ok(audioBytes(c, next.response.id) > 0);
  const turns = await history(c.ofType('session.created')[0].session.id);
  assert.equal(turns.length, 2);
  assert.match(turns[0].assistant, /^<tool_call>\s*\{\s*"name"\s*:\s*"get_weather"/);
  assert.equal(turns[1].user, '<tool_response>\n{"temperature":3}\n</tool_response>');
  c.rt.close();
});

test('G.711: mu-law input and output at 8 kHz', async () => {
  const c = await connect({ instructions: 'You tell stories.', audio: { input: { format: { type: 'audio/pcmu' }, turn_detection: null }, output: { format: { type: 'audio/pcmu' } } } });
  const session = c.ofType('session.updated')[0].session;
  assert.equal(session.audio.input.format.type, 'audio/pcmu');
  const clip = clips[0];
  const ulaw = execFileSync('sox', [clip.wav, '-t', 'raw', '-e', 'u-law', '-b', '8', '-c', '1', '-r', '8000', '-']);
  await append(c, ulaw, 8000, { realtime: false, bytesPerSample: 1 });
  c.send({ type: 'input_audio_buffer.commit' });
  c.send({ type: 'response.create' });
  const done = await c.waitType('response.done');
  const transcript = c.ofType('conversation.item.input_audio_transcription.completed')[0].transcript;
  assert.ok(wer(clip.text, transcript) <= 0.6, transcript);
  const bytes = audioBytes(c, done.response.id); // one byte a sample at 8 kHz
  const text = done.response.output[0].content[0].transcript;
  const nwords = text.split(/\s+/).filter(Boolean).length;
  assert.ok(bytes / 8000 > nwords / 10, `${bytes} bytes for ${nwords} words`);
  c.rt.close();
});

test('bad events: each gets an error event naming the client\'s event_id, and the session goes on', async () => {
  const ws = await Client.open(`ws://127.0.0.1:${s.port}/v1/realtime?api_key=${KEY}`);
  await ws.waitType('session.created');
  const cases = [
    ['{not json', 'invalid_json'],
    [{ type: 'no.such.event' }, 'invalid_event'],
    [{ event_id: 'e1' }, 'invalid_event'],
    [{ type: 'session.update', session: { instructions: 42 } }, 'invalid_value'],
    [{ type: 'session.update', session: { colour: 'red' } }, 'unknown_parameter'],
    [{ type: 'session.update', session: { audio: { input: { format: { type: 'audio/pcm', rate: 1000 } } } } }, 'invalid_value'],
    [{ type: 'session.update', session: { audio: { output: { voice: '../../etc/passwd' } } } }, 'invalid_value'],
    [{ type: 'session.update', session: { output_modalities: ['audio', 'text'] } }, 'invalid_value'],
    [{ type: 'session.update', session: { audio: { input: { turn_detection: { type: 'server_vad', threshold: 'high' } } } } }, 'invalid_value'],
    [{ type: 'input_audio_buffer.append' }, 'missing_required_parameter'],
    [{ type: 'input_audio_buffer.append', audio: 12 }, 'missing_required_parameter'],
    [{ type: 'input_audio_buffer.append', audio: '!!!not base64' }, 'invalid_value'],
    [{ type: 'input_audio_buffer.append', audio: Buffer.alloc(3).toString('base64') }, 'invalid_value'],
    [{ type: 'conversation.item.create' }, 'missing_required_parameter'],
    [{ type: 'conversation.item.create', item: { type: 'message', role: 'wizard', content: [] } }, 'invalid_value'],
    [{ type: 'conversation.item.create', item: { type: 'message', role: 'user', content: 'hi' } }, 'invalid_value'],
    [{ type: 'conversation.item.retrieve', item_id: 'nope' }, 'item_not_found'],
    [{ type: 'conversation.item.truncate', item_id: 'nope', content_index: 0, audio_end_ms: 10 }, 'item_not_found'],
    [{ type: 'conversation.item.delete', item_id: 'nope' }, 'item_not_found'],
    [{ type: 'response.create', response: { conversation: 'sometimes' } }, 'invalid_value'],
    [{ type: 'response.create', response: { input: [{ type: 'item_reference', id: 'nope' }] } }, 'item_not_found'],
    [{ type: 'response.cancel' }, 'response_cancel_not_active'],
    [{ type: 'input_audio_buffer.commit' }, 'input_audio_buffer_commit_empty'],
  ];
  for (const [i, [ev, code]] of cases.entries()) {
    const from = ws.msgs.length;
    const id = `bad-${i}`;
    ws.send(typeof ev === 'string' ? ev : { event_id: id, ...ev });
    const err = (await ws.waitType('error', { from })).json;
    assert.equal(err.error.code, code, `${JSON.stringify(ev)} → ${JSON.stringify(err)}`);
    assert.ok(err.error.message.length > 0);
    assert.ok(err.event_id);
    if (typeof ev !== 'string' && ev.type) assert.equal(err.error.event_id, id, JSON.stringify(err));
  }
  // A binary frame is not part of this API: an error, not a closed connection.
  const from = ws.msgs.length;
  ws.sendBinary(Buffer.alloc(640));
  assert.equal((await ws.waitType('error', { from })).json.error.code, 'invalid_event');
  // The session goes on: a valid update and a reply.
  ws.send({ type: 'session.update', session: { output_modalities: ['text'] } });
  await ws.waitType('session.updated', { from });
  ws.send({ type: 'conversation.item.create', item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Once upon a time' }] } });
  ws.send({ type: 'response.create' });
  assert.ok(finished((await ws.waitType('response.done', { from })).json.response));
  await ws.close();
});

test('authentication: the API key as a bearer token or the browser subprotocol openai-insecure-api-key.KEY (realtime selected); none is 401', async () => {
  const res = await httpGet(s.port, '/v1/realtime', wsUpgrade);
  assert.equal(res.status, 401);
  assert.equal(JSON.parse(res.body).error.code, 'invalid_api_key');
  assert.equal((await httpGet(s.port, '/v1/realtime', { ...wsUpgrade, Authorization: `Bearer ${KEY}` })).status, 101);
  const ws = await Client.open(`ws://127.0.0.1:${s.port}/v1/realtime`, ['realtime', `openai-insecure-api-key.${KEY}`]);
  assert.equal(ws.ws.protocol, 'realtime');
  await ws.waitType('session.created');
  await ws.close();
  await assert.rejects(Client.open(`ws://127.0.0.1:${s.port}/v1/realtime`, ['realtime', 'openai-insecure-api-key.wrong']));
});

test('the SDK unchanged, trusting the certificate through NODE_EXTRA_CA_CERTS; the Agents SDK\'s realtime session runs a spoken turn and a tool call', async () => {
  const out = await new Promise((ok, fail) => execFile(process.execPath, [join(repo, 'tests/clients/realtime-sdk.mjs')], {
    env: { ...process.env, NODE_EXTRA_CA_CERTS: certFile, PARLEY_URL: `https://localhost:${s.port}/v1`, PARLEY_KEY: KEY, PARLEY_CLIP: clips[1].wav },
    timeout: 120000,
  }, (err, stdout, stderr) => (err ? fail(new Error(`${err.message}\n${stderr}`)) : ok(JSON.parse(stdout.trim().split('\n').pop())))));
  assert.equal(out.sdk.created, 'realtime');
  assert.ok(out.sdk.text.length > 0, JSON.stringify(out.sdk));
  assert.ok(wer(clips[1].text, out.agents.transcript) <= 0.5, out.agents.transcript);
  assert.ok(out.agents.reply.length > 0, JSON.stringify(out.agents));
  assert.ok(out.agents.audioBytes > 24000, JSON.stringify(out.agents));
  // Its tool: called with arguments by its schema, the result sent back, the reply after it.
  assert.ok(typeof out.tool.city === 'string' && out.tool.city.length <= 12, JSON.stringify(out.tool));
  assert.ok(out.tool.outputSent, JSON.stringify(out.tool));
  assert.ok(out.tool.responses >= 2, JSON.stringify(out.tool));
});
