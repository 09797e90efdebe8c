// The cluster's other parts for tests and benchmarks, each the real program started on free
// loopback ports: Debian's llama-server with the test model, and HAProxy running
// deploy/haproxy.cfg.
import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { model, freePort, repo, tempDir } from './parley.mjs';

export const LLAMA_SERVER = '/usr/bin/llama-server';
export const HAPROXY = '/usr/sbin/haproxy';

const running = new Set();
process.on('exit', () => {
  for (const p of running) p.kill('SIGKILL');
});

function track(proc) {
  running.add(proc);
  proc.on('exit', () => running.delete(proc));
  return proc;
}

// Resolves once GET url+path answers 200.
export async function waitHealthy(url, ms = 30000, path = '/health') {
  const until = Date.now() + ms;
  for (;;) {
    try {
      const r = await fetch(`${url}${path}`);
      if (r.status === 200) return;
    } catch {}
    if (Date.now() > until) throw new Error(`${url} did not become healthy`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// llama-server with the test model (one thread, `slots` slots sharing `ctx` tokens).
// `logFile`: its log is also appended there.
export async function llamaServer({ port, ctx = 4096, slots = 4, threads = 1, extra = [], logFile } = {}) {
  port = port || (await freePort());
  const proc = track(spawn(LLAMA_SERVER, ['-m', model, '--host', '127.0.0.1', '--port', String(port), '-c', String(ctx), '-np', String(slots), '-t', String(threads), '--no-webui', ...extra], { stdio: ['ignore', 'ignore', 'pipe'] }));
  let log = '';
  proc.stderr.on('data', (d) => {
    log = (log + d).slice(-4000);
    if (logFile) appendFileSync(logFile, d);
  });
  const exited = new Promise((ok) => proc.on('exit', (code, signal) => ok({ code, signal })));
  const url = `http://127.0.0.1:${port}`;
  await Promise.race([waitHealthy(url), exited.then(() => { throw new Error(`llama-server exited:\n${log}`); })]);
  return { proc, port, url, exited, log: () => log, stop: () => { proc.kill('SIGKILL'); return exited; } };
}

// HAProxy with deploy/haproxy.cfg as shipped, its addresses from the environment (the file's
// presetenv defaults are the deployment's), less its `user`/`group` lines: the test runs it
// as whoever runs the tests. `nodes`: 'HOST:PORT' of each Parley node (the file names two).
export async function startHaproxy(nodes) {
  if (nodes.length !== 2) throw new Error('deploy/haproxy.cfg names two nodes');
  const dir = tempDir();
  const cfg = join(dir, 'haproxy.cfg');
  const shipped = readFileSync(join(repo, 'deploy/haproxy.cfg'), 'utf8');
  writeFileSync(cfg, shipped.split('\n').filter((l) => !/^\s*(user|group)\s/.test(l)).join('\n'));
  const port = await freePort();
  const stats = await freePort();
  const env = { ...process.env, PARLEY_BIND: `127.0.0.1:${port}`, PARLEY_NODE1: nodes[0], PARLEY_NODE2: nodes[1], PARLEY_STATS: `127.0.0.1:${stats}` };
  const proc = track(spawn(HAPROXY, ['-db', '-f', cfg], { env, stdio: ['ignore', 'pipe', 'pipe'] }));
  let log = '';
  proc.stdout.on('data', (d) => (log += d));
  proc.stderr.on('data', (d) => (log += d));
  const exited = new Promise((ok) => proc.on('exit', (code, signal) => ok({ code, signal })));
  const url = `http://127.0.0.1:${port}`;
  const statsUrl = `http://127.0.0.1:${stats}`;
  await Promise.race([waitHealthy(statsUrl, 15000, '/'), exited.then(() => { throw new Error(`haproxy exited:\n${log}`); })]);
  return {
    proc,
    port,
    url,
    ws: `ws://127.0.0.1:${port}/ws`,
    log: () => log,
    // Each backend server's state: { node1: 'UP', node2: 'DOWN', ... }.
    async states() {
      const csv = await (await fetch(`${statsUrl}/;csv`)).text();
      const lines = csv.split('\n');
      const head = lines[0].replace(/^# /, '').split(',');
      const out = {};
      for (const l of lines.slice(1)) {
        const f = l.split(',');
        if (f[0] === 'parley' && f[1] !== 'BACKEND') out[f[1]] = f[head.indexOf('status')];
      }
      return out;
    },
    stop: () => { proc.kill('SIGTERM'); return exited; },
  };
}

export const haveCluster = existsSync(LLAMA_SERVER) && existsSync(HAPROXY);
