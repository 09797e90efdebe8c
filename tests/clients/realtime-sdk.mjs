// Run by tests/integration/realtime.test.mjs with NODE_EXTRA_CA_CERTS set to Parley's
// self-signed certificate, as an application using the SDKs would be run: the official
// `openai` package's OpenAIRealtimeWS with no TLS option of its own, and the OpenAI Agents SDK's
// RealtimeSession over its WebSocket transport, one spoken turn (a LibriVox clip at real-time
// pace), then one tool call (the agent's function, run by the SDK, its result sent back).
// Prints one JSON line of what each got.
import { execFileSync } from 'node:child_process';
import OpenAI from 'openai';
import { OpenAIRealtimeWS } from 'openai/realtime/ws';
import { RealtimeAgent, RealtimeSession, OpenAIRealtimeWebSocket, tool } from '@openai/agents-realtime';
import { z } from 'zod';

const url = process.env.PARLEY_URL; // https://HOST:PORT/v1
const key = process.env.PARLEY_KEY;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const withTimeout = (p, ms, what) => Promise.race([p, sleep(ms).then(() => { throw new Error(`timed out waiting for ${what}`); })]);

async function sdk() {
  const client = new OpenAI({ apiKey: key, baseURL: url });
  const rt = new OpenAIRealtimeWS({ model: 'parley-local' }, client);
  rt.on('error', (e) => console.error('sdk error:', e.message));
  const created = await withTimeout(new Promise((ok) => rt.on('session.created', (e) => ok(e.session))), 20000, 'session.created');
  rt.send({ type: 'session.update', session: { type: 'realtime', output_modalities: ['text'] } });
  rt.send({ type: 'conversation.item.create', item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Once upon a time' }] } });
  rt.send({ type: 'response.create' });
  let text = '';
  rt.on('response.output_text.delta', (e) => { text += e.delta; });
  await withTimeout(new Promise((ok) => rt.on('response.done', ok)), 60000, 'response.done');
  rt.close();
  return { created: created.type, text };
}

async function agents() {
  const agent = new RealtimeAgent({ name: 'Storyteller', instructions: 'You tell stories.' });
  const transport = new OpenAIRealtimeWebSocket({ url: url.replace(/^https/, 'wss') + '/realtime' });
  const session = new RealtimeSession(agent, { transport, model: 'parley-local' });
  let transcript = '', reply = '', audioBytes = 0;
  const done = new Promise((ok) => session.on('transport_event', (e) => {
    if (e.type === 'conversation.item.input_audio_transcription.completed') transcript = e.transcript;
    if (e.type === 'response.output_audio_transcript.done') reply = e.transcript;
    if (e.type === 'response.done') ok();
  }));
  session.on('audio', (e) => { audioBytes += e.data.byteLength; });
  session.on('error', (e) => console.error('agents error:', e.error?.message || e.error));
  await session.connect({ apiKey: key });
  await sleep(300); // its session.update goes first
  const pcm = execFileSync('sox', [process.env.PARLEY_CLIP, '-t', 'raw', '-e', 'signed', '-b', '16', '-c', '1', '-r', '24000', '-']);
  const all = Buffer.concat([pcm, Buffer.alloc(24000 * 2 * 1.5)]);
  const frame = 960; // 20 ms
  const t0 = performance.now();
  for (let i = 0, n = 0; i < all.length; i += frame, n++) {
    const chunk = all.subarray(i, i + frame);
    session.sendAudio(chunk.buffer.slice(chunk.byteOffset, chunk.byteOffset + chunk.length));
    const wait = t0 + (n + 1) * 20 - performance.now();
    if (wait > 0) await sleep(wait);
  }
  await withTimeout(done, 60000, 'the agent\'s response');
  session.close();
  return { transcript, reply, audioBytes };
}

async function agentsTool() {
  let session;
  const result = { city: null, outputSent: false, responses: 0 };
  const getWeather = tool({
    name: 'get_weather',
    description: 'The weather in a city',
    parameters: z.object({ city: z.string().max(12) }),
    execute: async ({ city }) => {
      result.city = city;
      // One call is enough: the reply after it may be words.
      session.transport.sendEvent({ type: 'session.update', session: { type: 'realtime', tool_choice: 'auto' } });
      return `3 degrees in ${city}`;
    },
  });
  const agent = new RealtimeAgent({ name: 'Helper', instructions: 'You help.', tools: [getWeather] });
  const transport = new OpenAIRealtimeWebSocket({ url: url.replace(/^https/, 'wss') + '/realtime' });
  session = new RealtimeSession(agent, { transport, model: 'parley-local', config: { toolChoice: 'required', outputModalities: ['text'] } });
  const second = new Promise((ok) => session.on('transport_event', (e) => {
    if (e.type === 'response.done' && ++result.responses >= 2) ok();
  }));
  const origSend = transport.sendEvent.bind(transport);
  transport.sendEvent = (e) => {
    if (e.type === 'conversation.item.create' && e.item?.type === 'function_call_output') result.outputSent = true;
    return origSend(e);
  };
  session.on('error', (e) => console.error('agents tool error:', e.error?.message || e.error));
  await session.connect({ apiKey: key });
  await sleep(300);
  session.sendMessage('What is the weather in Oslo?');
  await withTimeout(second, 60000, 'the reply after the tool call');
  session.close();
  return result;
}

const out = { sdk: await sdk(), agents: await agents(), tool: await agentsTool() };
console.log(JSON.stringify(out));
process.exit(0);
