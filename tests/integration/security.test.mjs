// Who may read what: session ids and resume tokens (128 random bits each), the API key (from
// the environment or a file, out of `ps`), and the Host and Origin checks against DNS rebinding.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { startServer, fetchHistory, httpGet, wsUpgrade, Client, bin, tempDir } from '../lib/parley.mjs';

const status = async (port, path, headers) => (await httpGet(port, path, headers)).status;
const ws = wsUpgrade;

test('session ids and resume tokens are 128 random bits; a history is read with its token only', async () => {
  const s = await startServer([]);
  try {
    const readies = [];
    for (let i = 0; i < 12; i++) {
      const c = await Client.open(s.ws);
      readies.push({ c, ready: (await c.waitType('ready')).json });
    }
    const seen = new Set();
    for (const { ready } of readies) {
      assert.match(ready.session_id, /^[0-9a-f]{32}$/);
      assert.match(ready.resume_token, /^[0-9a-f]{32}$/);
      seen.add(ready.session_id).add(ready.resume_token);
    }
    assert.equal(seen.size, 24, 'every id and token is new');
    const [a, b] = readies;
    a.c.send({ type: 'text', text: 'My secret is blue.' });
    await a.c.waitType('response_done');
    const id = a.ready.session_id;
    const none = await fetchHistory(s.url, id);
    assert.equal(none.status, 401);
    assert.equal((await none.json()).code, 'unauthorized');
    assert.equal((await fetchHistory(s.url, id, 'f'.repeat(32))).status, 401);
    assert.equal((await fetchHistory(s.url, id, b.ready.resume_token)).status, 401, "another session's token");
    assert.equal((await fetchHistory(s.url, 'f'.repeat(32), a.ready.resume_token)).status, 401, 'an unknown id says nothing more');
    const ok = await fetchHistory(s.url, id, a.ready.resume_token);
    assert.equal(ok.status, 200);
    assert.equal((await ok.json()).turns[0].user, 'My secret is blue.');
    assert.equal((await fetch(`${s.url}/sessions/${id}?token=${a.ready.resume_token}`)).status, 200);
    for (const { c } of readies) await c.close();
  } finally {
    await s.stop();
  }
});

test('the API key: from PARLEY_API_KEY or a file, never in ps; it reads any history', async () => {
  const key = 'k-' + Math.random().toString(36).slice(2);
  let s = await startServer([], { env: { PARLEY_API_KEY: key } });
  try {
    assert.ok(!readFileSync(`/proc/${s.proc.pid}/cmdline`, 'utf8').includes(key), 'the key is on the command line');
    assert.equal(await status(s.port, '/ws', ws), 401);
    assert.equal(await status(s.port, '/ws', { ...ws, Authorization: `Bearer ${key}x` }), 401);
    const c = await Client.open(s.ws, ['parley', `parley-key.${key}`]);
    const id = (await c.waitType('ready')).json.session_id;
    c.send({ type: 'text', text: 'Hello.' });
    await c.waitType('response_done');
    await c.close();
    assert.equal((await fetchHistory(s.url, id, key)).status, 200, 'the key reads any history');
    assert.equal((await fetchHistory(s.url, id)).status, 401);
  } finally {
    await s.stop();
  }
  const file = join(tempDir(), 'key');
  writeFileSync(file, `${key}\n`, { mode: 0o600 });
  s = await startServer(['--api-key-file', file]);
  try {
    assert.equal(await status(s.port, '/ws', { ...ws, Authorization: `Bearer ${key}` }), 101);
    assert.equal(await status(s.port, '/ws', ws), 401);
  } finally {
    await s.stop();
  }
  const both = spawnSync(bin, ['serve', '--port', '0', '--api-key', key, '--api-key-file', file], { encoding: 'utf8' });
  assert.equal(both.status, 2);
  assert.match(both.stderr, /API key once/);
  const missing = spawnSync(bin, ['serve', '--port', '0', '--api-key-file', join(tempDir(), 'nope')], { encoding: 'utf8' });
  assert.equal(missing.status, 2);
  assert.match(missing.stderr, /cannot read/);
});

test('DNS rebinding: a Host that is not loopback is refused on every route; --allow-host lets a name in', async () => {
  let s = await startServer([]);
  try {
    const evil = `evil.example:${s.port}`;
    for (const path of ['/', '/health', '/metrics', '/sessions/x'])
      assert.equal(await status(s.port, path, { Host: evil }), 403, path);
    assert.equal(await status(s.port, '/ws', { ...ws, Host: evil, Origin: `http://${evil}` }), 403);
    assert.equal(await status(s.port, '/health', { Host: `localhost:${s.port}` }), 200);
    assert.equal(await status(s.port, '/health', { Host: `[::1]:${s.port}` }), 200);
    assert.equal(await status(s.port, '/ws', { ...ws, Host: `localhost:${s.port}`, Origin: `http://localhost:${s.port}` }), 101);
  } finally {
    await s.stop();
  }
  s = await startServer(['--allow-host', 'voice.example']);
  try {
    const name = `voice.example:${s.port}`;
    assert.equal(await status(s.port, '/health', { Host: name }), 200);
    assert.equal(await status(s.port, '/ws', { ...ws, Host: name, Origin: `http://${name}` }), 101);
    assert.equal(await status(s.port, '/health', { Host: `evil.example:${s.port}` }), 403);
  } finally {
    await s.stop();
  }
});

test('Origin: the page\'s own, scheme and port included, or one allowed by name', async () => {
  const s = await startServer(['--allow-origin', 'https://app.example']);
  try {
    const own = `127.0.0.1:${s.port}`;
    assert.equal(await status(s.port, '/ws', { ...ws, Origin: `http://${own}` }), 101);
    assert.equal(await status(s.port, '/ws', { ...ws, Origin: `https://${own}` }), 403);
    assert.equal(await status(s.port, '/ws', { ...ws, Origin: `http://127.0.0.1:${s.port + 1}` }), 403);
    assert.equal(await status(s.port, '/ws', { ...ws, Origin: 'null' }), 403);
    assert.equal(await status(s.port, '/ws', { ...ws, Origin: 'https://app.example' }), 101);
    assert.equal(await status(s.port, '/ws', { ...ws, Origin: 'http://app.example' }), 403);
  } finally {
    await s.stop();
  }
});
