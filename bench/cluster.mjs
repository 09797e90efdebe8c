// Capacity of one node against two behind HAProxy. `parley bench --url` drives simulated voice
// clients at real-time pace (hands-free, the LibriVox clips) against
//   one:  one `parley serve` with the model in process and SQLite (the single-machine product);
//   two:  two Parley nodes sharing PostgreSQL and two llama-servers (--llm-url twice), behind
//         HAProxy running deploy/haproxy.cfg: the distributed path, every part a real process.
// The client count rises until p95 end of speech -> first audio passes 2x one node's 1-client
// figure (the same bound for both); a setup's capacity is the most clients it served within it.
// Every process's CPU (user + system) is read from /proc around each run and divided by the
// turns served, so the capacity of N machines can be predicted from the CPU a turn costs.
//   node bench/cluster.mjs [--clients 1,2,3,4,6,8] [--turns 3] [--setups one,two] [--bound-ms MS]
//                          [--node-args "ARGS"]
// Prints a table; writes bench/out/cluster.json (and the logs of the nodes and llama-servers, cluster-{node,llama}-N.log).
import { spawn } from 'node:child_process';
import { appendFileSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { bin, freePort, model, repo, tempDir } from '../tests/lib/parley.mjs';
import { llamaServer, startHaproxy, waitHealthy } from '../tests/lib/cluster.mjs';
import { startPostgres } from '../tests/lib/postgres.mjs';

const opt = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : def;
};
const ramp = opt('clients', '1,2,3,4,6,8').split(',').map(Number);
const turns = Number(opt('turns', '3'));
const setups = opt('setups', 'one,two').split(',');
// More options for every Parley node (e.g. --node-args "--log-level debug").
const nodeArgs = opt('node-args', '').split(' ').filter(Boolean);
const TICK = 100; // clock ticks per second (/proc/PID/stat)

// CPU seconds of a process and, with `children`, of every process it started that is still
// running (PostgreSQL's backends).
function cpuSeconds(pid, children = false) {
  const stat = (p) => {
    try {
      const f = readFileSync(`/proc/${p}/stat`, 'utf8');
      const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
      return { ppid: Number(rest[1]), cpu: (Number(rest[11]) + Number(rest[12])) / TICK };
    } catch {
      return null;
    }
  };
  let total = stat(pid)?.cpu || 0;
  if (children) {
    for (const d of readdirSync('/proc')) {
      if (!/^\d+$/.test(d)) continue;
      const s = stat(d);
      if (s && s.ppid === pid) total += s.cpu;
    }
  }
  return total;
}

function postgresPid(dir) {
  return Number(readFileSync(join(dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
}

let nodesStarted = 0;
async function startNode(args) {
  const port = await freePort();
  const logFile = join(repo, `bench/out/cluster-node-${++nodesStarted}.log`);
  const proc = spawn(bin, ['serve', '--host', '127.0.0.1', '--port', String(port), ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr.on('data', (d) => {
    log = (log + d).slice(-8000);
    appendFileSync(logFile, d);
  });
  const url = `http://127.0.0.1:${port}`;
  await Promise.race([waitHealthy(url, 60000), new Promise((_, fail) => proc.on('exit', () => fail(new Error('node exited:\n' + log))))]);
  return { proc, port, url, ws: `ws://127.0.0.1:${port}/ws`, stop: () => new Promise((ok) => { proc.on('exit', ok); proc.kill('SIGINT'); }) };
}

// One `parley bench` run of `clients` clients; returns its p95/median and the turns it served.
// Started asynchronously: this process must go on reading the servers' logs meanwhile (a pipe
// nobody reads fills up, and a server that writes its log into it stops).
async function benchRun(ws, clients, out) {
  const proc = spawn(bin, ['bench', '--url', ws, '--clients', String(clients), '--turns', String(turns), '--warmup', '1', '--no-bare', '--out', out, '--html', out.replace(/\.json$/, '.html')], { stdio: ['ignore', 'ignore', 'inherit'] });
  const code = await new Promise((ok) => proc.on('exit', ok));
  if (code !== 0) throw new Error(`parley bench exited with ${code}`);
  const run = JSON.parse(readFileSync(out, 'utf8')).runs[0];
  const st = run.summary.stages_ms.end_of_speech_to_first_audio || {};
  return { p95: st.p95, median: st.median, turns: run.summary.turns, failed: run.summary.failed };
}

async function measure(name, ws, processes) {
  const rows = [];
  const dir = join(repo, 'bench/out');
  for (const clients of ramp) {
    const before = processes.map((p) => cpuSeconds(p.pid, p.children));
    const r = await benchRun(ws, clients, join(dir, `cluster-${name}-${clients}.json`));
    const after = processes.map((p) => cpuSeconds(p.pid, p.children));
    r.clients = clients;
    r.cpu_ms_per_turn = Object.fromEntries(processes.map((p, i) => [p.name, ((after[i] - before[i]) * 1000) / Math.max(1, r.turns)]));
    rows.push(r);
    console.log(`${name}: ${clients} client(s): end of speech -> first audio median ${r.median?.toFixed(1)} ms, p95 ${r.p95?.toFixed(1)} ms, ${r.turns} turns, ${r.failed} failed; CPU ms/turn ${JSON.stringify(Object.fromEntries(Object.entries(r.cpu_ms_per_turn).map(([k, v]) => [k, Math.round(v)])))}`);
    if (bound && (r.p95 > bound || r.failed)) break;
    if (!bound && clients === 1) bound = 2 * r.p95;
  }
  return rows;
}

let bound = Number(opt('bound-ms', '0'));

const capacity = (rows) => rows.filter((r) => r.p95 <= bound && !r.failed).reduce((a, r) => Math.max(a, r.clients), 0);
const results = {};
mkdirSync(join(repo, 'bench/out'), { recursive: true });
for (const f of readdirSync(join(repo, 'bench/out'), { withFileTypes: true }))
  if (/^cluster-(node|llama)-\d+\.log$/.test(f.name)) rmSync(join(repo, 'bench/out', f.name));

if (setups.includes('one')) {
  const node = await startNode(['--model', model, '--db', join(tempDir(), 'one.db'), ...nodeArgs]);
  try {
    results.one = await measure('one', node.ws, [{ name: 'parley', pid: node.proc.pid }]);
  } finally {
    await node.stop();
  }
}

if (setups.includes('two')) {
  const pg = await startPostgres();
  const llms = await Promise.all([1, 2].map((n) => llamaServer({ slots: 8, ctx: 16384, logFile: join(repo, `bench/out/cluster-llama-${n}.log`) })));
  const args = ['--store', pg.url, '--llm-url', llms[0].url, '--llm-url', llms[1].url, '--llm-shared', '--trusted-proxy', '127.0.0.1', ...nodeArgs];
  const nodes = [await startNode(args), await startNode(args)];
  const lb = await startHaproxy(nodes.map((n) => `127.0.0.1:${n.port}`));
  try {
    const processes = [
      { name: 'parley node 1', pid: nodes[0].proc.pid },
      { name: 'parley node 2', pid: nodes[1].proc.pid },
      { name: 'llama-server 1', pid: llms[0].proc.pid },
      { name: 'llama-server 2', pid: llms[1].proc.pid },
      { name: 'haproxy', pid: lb.proc.pid },
      { name: 'postgresql', pid: postgresPid(pg.dir), children: true },
    ];
    if (!bound) bound = Infinity; // no one-node figure (nor --bound-ms): report the ramp only
    results.two = await measure('two', lb.ws, processes);
  } finally {
    await lb.stop();
    await Promise.all(nodes.map((n) => n.stop()));
    await Promise.all(llms.map((l) => l.stop()));
    await pg.stop();
  }
}

const cap = Object.fromEntries(Object.entries(results).map(([k, rows]) => [k, capacity(rows)]));
console.log(`\nbound: p95 end of speech -> first audio <= ${bound.toFixed(1)} ms (2x one node's 1-client p95)`);
for (const [k, c] of Object.entries(cap)) console.log(`capacity, ${k === 'one' ? 'one node (model in process)' : 'two nodes behind HAProxy (two llama-servers, PostgreSQL)'}: ${c} clients`);
if (cap.one && cap.two !== undefined) console.log(`ratio two / one: ${(cap.two / cap.one).toFixed(2)} (goal >= 0.9 on one machine: both setups share its ${cpus().length} cores)`);
writeFileSync(join(repo, 'bench/out/cluster.json'), JSON.stringify({ date: new Date().toISOString(), cores: cpus().length, cpu: cpus()[0]?.model, turns_per_client: turns, bound_ms: bound, capacity: cap, runs: results }, null, 1) + '\n');
console.log('wrote bench/out/cluster.json');
process.exit(0);
