// SIGTERM drains: no new sessions (the upgrade gets 503 server_draining, /health says
// draining, so a load balancer sends them elsewhere), the reply being written finishes and is
// stored, each client is told server_draining and closed with 1012 (service restart), then the
// server exits; the conversation resumes on a server that uses the same store. The language
// model is a slow OpenAI-compatible stream (a local fake: a word every 40 ms), so the reply is
// still being written when the signal comes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { startServer, Client, httpGet, wsUpgrade, tempDir, fetchHistory } from '../lib/parley.mjs';

async function slowModel(words = 40, everyMs = 40) {
  const server = createServer((req, res) => {
    req.resume();
    if (req.url === '/health') return res.end('ok');
    if (req.url !== '/v1/chat/completions') { res.writeHead(404); return res.end(); }
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    let i = 0;
    const timer = setInterval(() => {
      if (res.destroyed) return clearInterval(timer);
      if (i === words) {
        clearInterval(timer);
        res.write(`data: ${JSON.stringify({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\n`);
        res.write('data: [DONE]\n\n');
        return res.end();
      }
      const word = i % 8 === 7 ? 'end. ' : `word${i} `;
      res.write(`data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: word } }] })}\n\n`);
      i++;
    }, everyMs);
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  return { url: `http://127.0.0.1:${server.address().port}`, close: () => server.close() };
}

test('SIGTERM: the reply in progress finishes and is stored, clients are told to reconnect, new sessions go elsewhere, the conversation resumes', async () => {
  const model = await slowModel();
  const db = join(tempDir(), 'shared.db');
  const args = ['--llm-url', model.url, '--tts', 'espeak', '--max-tokens', '200'];
  const s = await startServer(args, { withModel: false, db });
  try {
    const idle = await Client.open(s.ws);
    await idle.waitType('ready');
    const c = await Client.open(s.ws);
    const ready = await c.waitType('ready');
    c.send({ type: 'text', text: 'Tell me about words.' });
    await c.waitType('text_chunk');
    s.proc.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 100));
    // Draining: no new session, and the health check says so.
    const upgrade = await httpGet(s.port, '/ws', wsUpgrade);
    assert.equal(upgrade.status, 503);
    assert.equal(JSON.parse(upgrade.body).code, 'server_draining');
    assert.equal(upgrade.headers['retry-after'], '1');
    const health = await httpGet(s.port, '/health');
    assert.equal(health.status, 503);
    assert.equal(JSON.parse(health.body).status, 'draining');
    // The idle client was told and closed at once; the busy one got its whole reply first.
    const idleErr = await idle.waitType('error');
    assert.equal(idleErr.json.code, 'server_draining');
    assert.equal((await idle.closed).code, 1012);
    const done = await c.waitType('response_done', { timeout: 10000 });
    assert.equal(done.json.text.trim().split(/\s+/).length, 40, 'the whole reply');
    assert.match(done.json.text, /word38 end\.$/);
    const told = await c.waitFor((m) => m.json && m.json.type === 'error' && m.json.code === 'server_draining');
    assert.ok(c.msgs.indexOf(told) > c.msgs.indexOf(done), 'told after the reply');
    assert.equal((await c.closed).code, 1012);
    assert.ok(!c.msgs.some((m) => m.json && m.json.type === 'interrupted'), 'nothing was cut');
    const exit = await s.exited;
    assert.equal(exit.code, 0);
    // Another server on the same store resumes the conversation with its whole history.
    const t = await startServer(args, { withModel: false, db });
    try {
      const again = await Client.open(t.ws);
      await again.waitType('ready'); // a new session first, then the resume
      const hist = await (await fetchHistory(t.url, ready.json.session_id, ready.json.resume_token)).json();
      assert.equal(hist.turns.length, 1);
      assert.equal(hist.turns[0].assistant, done.json.text);
      await again.close();
    } finally {
      await t.stop();
    }
  } finally {
    model.close();
    if (s.proc.exitCode === null) s.proc.kill('SIGKILL');
  }
});
