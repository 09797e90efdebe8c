// A model's layers on other machines: two `parley rpc-worker` processes (ggml's RPC server,
// libggml0-backend-rpc) on loopback hold the test model's layers; the reply equals the one
// computed here with the same seed. A worker that is down stops the server at start, naming it.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { startServer, Client, bin, model, freePort } from '../lib/parley.mjs';

const workers = new Set();
after(() => {
  for (const p of workers) p.kill('SIGKILL');
});

async function worker() {
  const port = await freePort();
  const proc = spawn(bin, ['rpc-worker', '--host', '127.0.0.1', '--port', String(port), '--threads', '1'], { stdio: ['ignore', 'pipe', 'pipe'] });
  workers.add(proc);
  let out = '';
  proc.stdout.on('data', (d) => (out += d));
  proc.stderr.on('data', (d) => (out += d));
  await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`rpc-worker did not start:\n${out}`)), 20000);
    const check = setInterval(() => {
      if (/endpoint\s*:/.test(out)) {
        clearInterval(check);
        clearTimeout(timer);
        ok();
      }
    }, 50);
  });
  return { proc, endpoint: `127.0.0.1:${port}`, out: () => out };
}

async function reply(args) {
  const s = await startServer(['--tts', 'none', '--temperature', '0.8', '--seed', '7', '--max-tokens', '32', ...args]);
  try {
    const c = await Client.open(s.ws);
    await c.waitType('ready');
    c.send({ type: 'text', text: 'Once upon a time there was a cat.' });
    const done = await c.waitType('response_done', { timeout: 60000 });
    await c.close();
    return done.json.text;
  } finally {
    await s.stop();
  }
}

test('rpc: the layers on two workers give the reply computed here, with the same seed', async () => {
  const a = await worker();
  const b = await worker();
  const local = await reply([]);
  assert.ok(local.length > 0);
  const remote = await reply(['--rpc', `${a.endpoint},${b.endpoint}`]);
  assert.equal(remote, local);
  for (const w of [a, b]) assert.match(w.out(), /Accepted client connection/, 'each worker took part');
});

test('rpc: a worker that is down, or a malformed list, is refused at start with its name', async () => {
  const port = await freePort();
  const down = spawnSync(bin, ['serve', '--port', '0', '--model', model, '--rpc', `127.0.0.1:${port}`], { encoding: 'utf8', timeout: 30000 });
  assert.notEqual(down.status, 0);
  assert.match(down.stderr, new RegExp(`rpc worker 127\\.0\\.0\\.1:${port} cannot be reached`));
  const bad = spawnSync(bin, ['serve', '--port', '0', '--model', model, '--rpc', 'nohost'], { encoding: 'utf8', timeout: 30000 });
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /'nohost' is not HOST:PORT/);
});
