// The language model over OpenAI-compatible servers (--llm-url): Debian's llama-server running
// the real test model, started here on free loopback ports. A recording proxy in front of it
// shows what Parley sends (the history unchanged turn to turn, prompt caching, a slot per
// session) and when it hangs up (a cut reply closes its request). Failures: a server killed
// with kill -9 in the middle of a reply, a pool member that answers 500, a server that never
// answers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request } from 'node:http';
import { existsSync } from 'node:fs';
import { startServer, Client } from '../lib/parley.mjs';
import { LLAMA_SERVER, llamaServer } from '../lib/cluster.mjs';

const haveServer = existsSync(LLAMA_SERVER);
const skip = haveServer ? false : 'no llama-server (llama.cpp-tools)';

// Forwards to `target`, keeping each request's body and how it ended (answered whole, or the
// client hung up first).
async function recordingProxy(target) {
  const seen = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      const entry = { method: req.method, path: req.url, body: body ? JSON.parse(body) : null, ended: 'open', response: '' };
      seen.push(entry);
      const up = request(`${target}${req.url}`, { method: req.method, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode, r.headers);
        r.on('data', (d) => { entry.response += d; res.write(d); });
        r.on('end', () => { if (entry.ended === 'open') entry.ended = 'complete'; res.end(); });
      });
      up.on('error', () => res.destroy());
      res.on('close', () => { if (!res.writableFinished) { entry.ended = 'client closed'; up.destroy(); } });
      up.end(body);
    });
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  return { url: `http://127.0.0.1:${server.address().port}`, seen, chats: () => seen.filter((e) => e.path === '/v1/chat/completions'), close: () => server.close() };
}

async function textTurn(c, text, { timeout = 30000 } = {}) {
  const from = c.msgs.length;
  c.send({ type: 'text', text });
  const done = await c.waitType('response_done', { from, timeout });
  const chunks = c.msgs.slice(from).filter((m) => m.json && m.json.type === 'text_chunk' && m.json.turn_id === done.json.turn_id);
  const errors = c.msgs.slice(from).filter((m) => m.json && m.json.type === 'error');
  return { done: done.json, text: chunks.map((m) => m.json.text).join(' '), errors: errors.map((m) => m.json) };
}

// The reply the server itself streams for the same request body.
async function serverReply(url, body) {
  const r = await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...body, stream: false }) });
  assert.equal(r.status, 200);
  return (await r.json()).choices[0].message.content;
}

test('replies stream from llama-server: the history goes back unchanged, cached, on the session\'s slot; the reply is the server\'s own', { skip }, async () => {
  const llama = await llamaServer();
  const proxy = await recordingProxy(llama.url);
  const s = await startServer(['--llm-url', proxy.url, '--tts', 'none', '--temperature', '0', '--max-tokens', '24'], { withModel: false });
  try {
    const health = await (await fetch(`${s.url}/health`)).json();
    assert.match(health.llm, new RegExp(`remote ${proxy.url}`));
    const c = await Client.open(s.ws);
    await c.waitType('ready');
    const one = await textTurn(c, 'Once upon a time there was a little dog.');
    assert.deepEqual(one.errors, []);
    assert.ok(one.text.length > 0, 'a reply');
    const two = await textTurn(c, 'What did the dog do next?');
    assert.ok(two.text.length > 0);
    const [first, second] = proxy.chats();
    assert.equal(first.body.stream, true);
    assert.equal(first.body.cache_prompt, true, 'llama-server keeps the prompt cached');
    assert.equal(typeof first.body.id_slot, 'number', 'a server slot per session');
    assert.equal(second.body.id_slot, first.body.id_slot);
    // The second request starts with the first one's messages and its reply, unchanged.
    const before = first.body.messages;
    assert.deepEqual(second.body.messages.slice(0, before.length), before);
    const squeeze = (x) => x.replace(/\s+/g, ' ').trim();
    const reply = second.body.messages[before.length];
    assert.equal(reply.role, 'assistant');
    assert.equal(squeeze(reply.content), squeeze(one.text), 'the reply as it was spoken');
    assert.equal(second.body.messages.at(-1).content, 'What did the dog do next?');
    // What Parley streamed is what the server writes for that request.
    assert.equal(reply.content, (await serverReply(llama.url, first.body)).trim());
    // The server's prompt cache served the second turn's history; timings came through.
    assert.ok(two.done.timings.cached_tokens > 0, JSON.stringify(two.done.timings));
    assert.ok(two.done.timings.generated_tokens > 0, JSON.stringify(two.done.timings));
    await c.close();
  } finally {
    await s.stop();
    proxy.close();
    llama.proc.kill('SIGKILL');
  }
});

test('--llm-shared (several nodes on one server): no id_slot; the server still finds each conversation in its cache', { skip }, async () => {
  const llama = await llamaServer({ slots: 4 });
  const proxy = await recordingProxy(llama.url);
  const args = ['--llm-url', proxy.url, '--llm-shared', '--tts', 'none', '--temperature', '0', '--max-tokens', '24'];
  const [a, b] = await Promise.all([startServer(args, { withModel: false }), startServer(args, { withModel: false })]);
  try {
    const ca = await Client.open(a.ws);
    const cb = await Client.open(b.ws);
    await Promise.all([ca.waitType('ready'), cb.waitType('ready')]);
    // Two nodes, one session each: a slot per session would be slot 0 on both.
    await Promise.all([textTurn(ca, 'Once upon a time there was a little dog.'), textTurn(cb, 'The sun was hot and the sea was blue.')]);
    const second = await Promise.all([textTurn(ca, 'What did the dog do next?'), textTurn(cb, 'Who swam in the sea?')]);
    const chats = proxy.chats();
    assert.equal(chats.length, 4);
    for (const c of chats) assert.equal(c.body.id_slot, undefined, 'no slot chosen by a node');
    for (const t of second) assert.ok(t.done.timings.cached_tokens > 0, JSON.stringify(t.done.timings));
    await Promise.all([ca.close(), cb.close()]);
  } finally {
    await Promise.all([a.stop(), b.stop()]);
    proxy.close();
    llama.proc.kill('SIGKILL');
  }
});

test('a turn whose words tokenize worse than any before (llama-server: the prompt exceeds its slot) is sent again with less history and answered', { skip }, async () => {
  // One slot of 1024 tokens. The first turn is prose (about 2.2 bytes a token with this model's
  // vocabulary: the budget learns that); the second is made-up words (about 1.2), so the
  // prompt with the first turn in it, estimated at the prose's ratio, does not fit the slot,
  // and without it does.
  const llama = await llamaServer({ slots: 1, ctx: 1024 });
  const proxy = await recordingProxy(llama.url);
  const s = await startServer(['--llm-url', proxy.url, '--tts', 'none', '--temperature', '0', '--max-tokens', '16'], { withModel: false });
  try {
    const c = await Client.open(s.ws);
    await c.waitType('ready');
    const one = await textTurn(c, 'Once upon a time, in a quiet town by the sea, a little girl named Lily found a shiny red ball. She asked her mother if she could keep it, and her mother smiled and said yes. ' +
      'Lily played with the ball all day long. She threw it high in the sky and ran after it on the sand. When the sun went down, she took the ball home and put it next to her bed.');
    assert.deepEqual(one.errors, []);
    let words = '';
    for (let i = 0, x = 7; words.length < 1000; i++) {
      x = (x * 1103515245 + 12345) % 2147483648;
      words += i % 6 === 5 ? ' ' : String.fromCharCode(97 + ((x >> 16) % 26));
    }
    const two = await textTurn(c, words);
    assert.deepEqual(two.errors, [], 'answered, not an error');
    assert.ok(two.done.timings.generated_tokens > 0, JSON.stringify(two.done.timings));
    const chats = proxy.chats();
    assert.equal(chats.length, 3, 'the second turn went twice');
    assert.match(chats[1].response, /exceed_context_size_error/);
    assert.ok(chats[2].body.messages.length < chats[1].body.messages.length, 'sent again with less history');
    assert.equal(chats[2].body.messages.at(-1).content, words);
    // The ratio is learnt: a third turn of such words goes once.
    const three = await textTurn(c, words.split(' ').reverse().join(' '));
    assert.deepEqual(three.errors, []);
    assert.equal(proxy.chats().length, 4);
    await c.close();
  } finally {
    await s.stop();
    proxy.close();
    llama.proc.kill('SIGKILL');
  }
});

test('an interrupted reply closes its request at once, and the server stops generating', { skip }, async () => {
  const llama = await llamaServer({ ctx: 8192, slots: 2, extra: ['--ignore-eos'] });
  const proxy = await recordingProxy(llama.url);
  const s = await startServer(['--llm-url', proxy.url, '--tts', 'none', '--max-tokens', '3000', '--ctx', '4096'], { withModel: false });
  try {
    const c = await Client.open(s.ws);
    await c.waitType('ready');
    const from = c.msgs.length;
    c.send({ type: 'text', text: 'Tell me a very long story.' });
    await c.waitType('text_chunk', { from });
    const t0 = Date.now();
    c.send({ type: 'interrupt' });
    await c.waitType('interrupted', { from });
    const [req] = proxy.chats();
    while (req.ended === 'open' && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 5));
    assert.equal(req.ended, 'client closed', 'Parley hung up before the reply ended');
    assert.ok(Date.now() - t0 < 1000, `closed ${Date.now() - t0} ms after the interrupt`);
    assert.ok(!req.response.includes('[DONE]'));
    // llama-server noticed: no slot is still generating (3000 tokens would take seconds).
    let busy = true;
    while (busy && Date.now() - t0 < 3000) {
      const slots = await (await fetch(`${llama.url}/slots`)).json();
      busy = slots.some((x) => x.is_processing);
      if (busy) await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(!busy, 'llama-server still generating the cut reply');
    // The session goes on with the next turn.
    const next = await textTurn(c, 'A short one, please.');
    assert.deepEqual(next.errors, []);
    await c.close();
  } finally {
    await s.stop();
    proxy.close();
    llama.proc.kill('SIGKILL');
  }
});

test('a pool: kill -9 in the middle of a reply ends that turn with an error naming the server; the next turn goes to the other; the killed one comes back', { skip }, async () => {
  const long = { ctx: 8192, slots: 2, extra: ['--ignore-eos'] };
  const a = await llamaServer(long);
  const b = await llamaServer(long);
  const s = await startServer(['--llm-url', a.url, '--llm-url', b.url, '--tts', 'none', '--max-tokens', '1500', '--ctx', '4096'], { withModel: false });
  try {
    const c = await Client.open(s.ws);
    await c.waitType('ready');
    // The first request goes to the first member (none has any in flight): kill it as the
    // reply's first words arrive.
    const from = c.msgs.length;
    c.send({ type: 'text', text: 'Tell me a story.' });
    await c.waitType('text_chunk', { from });
    a.proc.kill('SIGKILL');
    const err = await c.waitType('error', { from });
    assert.equal(err.json.code, 'llm_failed');
    assert.match(err.json.message, new RegExp(a.url.replace(/[.]/g, '\\.')));
    await c.waitType('response_done', { from });
    // The session goes on: the next turn is answered by the other member.
    const next = await textTurn(c, 'And then?');
    assert.deepEqual(next.errors, []);
    assert.ok(next.text.length > 0);
    // Back on its port, the killed member is found by its health check and takes requests.
    const again = await llamaServer({ ...long, port: a.port });
    await new Promise((r) => setTimeout(r, 2500));
    b.proc.kill('SIGKILL');
    await b.exited;
    const third = await textTurn(c, 'The end.');
    assert.deepEqual(third.errors, [], 'answered by the member that came back');
    // With no member left: a clear error, and the session stays open.
    again.proc.kill('SIGKILL');
    await again.exited;
    const none = await textTurn(c, 'Anyone?');
    assert.equal(none.errors[0].code, 'llm_failed');
    assert.match(none.errors[0].message, /reachable|refused|connect/i);
    await c.close();
  } finally {
    await s.stop();
  }
});

test('a member that answers 500 is skipped for the next; a server that never answers times out (--llm-timeout)', { skip }, async () => {
  const failing = createServer((req, res) => {
    req.resume();
    if (req.url === '/health') return res.end('ok');
    res.writeHead(500, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { message: 'the model crashed', type: 'server_error' } }));
  });
  await new Promise((ok) => failing.listen(0, '127.0.0.1', ok));
  const failingUrl = `http://127.0.0.1:${failing.address().port}`;
  // Healthy, but never answers a chat completion.
  const silent = createServer((req, res) => {
    req.resume();
    if (req.url === '/health') return res.end('ok');
    if (req.url !== '/v1/chat/completions') { res.writeHead(404); return res.end(); }
  });
  await new Promise((ok) => silent.listen(0, '127.0.0.1', ok));
  const silentUrl = `http://127.0.0.1:${silent.address().port}`;
  const llama = await llamaServer();
  try {
    // Alone, the failing server's error reaches the client with its message.
    let s = await startServer(['--llm-url', failingUrl, '--tts', 'none'], { withModel: false });
    let c = await Client.open(s.ws);
    await c.waitType('ready');
    let t = await textTurn(c, 'Hello?');
    assert.equal(t.errors[0].code, 'llm_failed');
    assert.match(t.errors[0].message, /HTTP 500: the model crashed/);
    assert.match(t.errors[0].message, new RegExp(failingUrl.replace(/[.]/g, '\\.')));
    await c.close();
    await s.stop();
    // In a pool, the request goes on to the member that works.
    s = await startServer(['--llm-url', failingUrl, '--llm-url', llama.url, '--tts', 'none'], { withModel: false });
    c = await Client.open(s.ws);
    await c.waitType('ready');
    for (let i = 0; i < 3; i++) {
      t = await textTurn(c, `Hello number ${i}.`);
      assert.deepEqual(t.errors, []);
      assert.ok(t.text.length > 0);
    }
    await c.close();
    await s.stop();
    // A server that takes the request and says nothing: the turn fails after --llm-timeout.
    s = await startServer(['--llm-url', silentUrl, '--llm-timeout', '1', '--tts', 'none'], { withModel: false });
    c = await Client.open(s.ws);
    await c.waitType('ready');
    const t0 = Date.now();
    t = await textTurn(c, 'Are you there?');
    const took = Date.now() - t0;
    assert.equal(t.errors[0].code, 'llm_failed');
    assert.match(t.errors[0].message, /no answer for 1 s/);
    assert.ok(took >= 900 && took < 5000, `${took} ms`);
    await c.close();
    await s.stop();
  } finally {
    failing.close();
    silent.close();
    llama.proc.kill('SIGKILL');
  }
});
