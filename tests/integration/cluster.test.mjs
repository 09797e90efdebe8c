// The cluster, every part real and on loopback: PostgreSQL, two llama-servers with the test
// model, two Parley nodes sharing both (--llm-url twice) and the store, HAProxy running
// deploy/haproxy.cfg in front of them. Eight voice clients talk through HAProxy (spoken LibriVox
// turns and typed ones). In the middle, one node is killed with kill -9, and once it is back the
// other is drained with SIGTERM: each client reconnects through HAProxy to its session id as the
// page does, and its conversation resumes on the node that is left with its whole history; at
// the end every turn a client saw finish is in PostgreSQL with the text the client got.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { bin, Client, clips, fetchHistory, freePort, voiceTurn, reportPlayedOut, tempDir, startServer, until } from '../lib/parley.mjs';
import { startPostgres } from '../lib/postgres.mjs';
import { haveCluster, llamaServer, startHaproxy, waitHealthy } from '../lib/cluster.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const CLIENTS = 8;
const PROMPTS = ['Hello there.', 'Tell me about the little dog.', 'What happened next?', 'Why is the sky blue?'];

class Closed extends Error {}

// A Parley node on a fixed port (a restarted node comes back where HAProxy looks for it).
async function startNode(port, args) {
  const proc = spawn(bin, ['serve', '--host', '127.0.0.1', '--port', String(port), '--db', `${tempDir()}/unused.db`, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr.on('data', (d) => (log += d));
  const exited = new Promise((ok) => proc.on('exit', (code, signal) => ok({ code, signal })));
  const url = `http://127.0.0.1:${port}`;
  await Promise.race([waitHealthy(url), exited.then(() => { throw new Error(`node exited:\n${log}`); })]);
  return { proc, port, url, exited, log: () => log };
}

// A page's behaviour: talks turn after turn; when its connection ends (the node died, or told it
// server_draining and closed), it connects again through the load balancer to its session id.
class Talker {
  constructor(n, lb) {
    this.n = n;
    this.lb = lb;
    this.sid = null;
    this.token = null;
    this.c = null;
    this.finished = []; // { turn_id, user, reply } of each response_done, in order
    this.resumes = []; // { turns: ready.turns, finished: how many this client had seen }
    this.errors = [];
    this.events = []; // interrupted / resumed events of connections before this one
    this.turns = 0;
  }

  async connect() {
    for (let attempt = 0; ; attempt++) {
      try {
        if (this.c) this.events.push(...this.c.msgs.filter((m) => m.json && ['interrupted', 'resumed'].includes(m.json.type)).map((m) => m.json));
        this.c = await Client.open(this.lb.ws + (this.sid ? `?session_id=${this.sid}` : ''));
        const ready = (await this.wait((m) => m.json && m.json.type === 'ready', 0, 10000)).json;
        if (this.sid) {
          assert.equal(ready.session_id, this.sid, `client ${this.n}: resumed another session`);
          this.resumes.push({ resumed: ready.resumed, turns: ready.turns, finished: this.finished.length });
        } else {
          ({ session_id: this.sid, resume_token: this.token } = ready);
        }
        return;
      } catch (e) {
        if (e instanceof assert.AssertionError) throw e;
        if (this.c) this.c.ws.close();
        if (attempt > 200) throw new Error(`client ${this.n} cannot reconnect: ${e.message}`);
        await sleep(100);
      }
    }
  }

  wait(pred, from, timeout = 60000) {
    const c = this.c;
    return Promise.race([c.waitFor(pred, { from, timeout }), c.closed.then(() => { throw new Closed(); })]);
  }

  async turn() {
    const i = this.turns++;
    let end, user, from;
    if ((i + this.n) % 2 === 0) {
      const clip = clips[(i + this.n) % clips.length];
      const r = await Promise.race([voiceTurn(this.c, clip, { realtime: false, played: false }), this.c.closed.then(() => { throw new Closed(); })]);
      ({ from } = r);
      user = r.final.json.text;
      end = r.done && r.done.json;
    } else {
      user = PROMPTS[(i + this.n) % PROMPTS.length];
      from = this.c.msgs.length;
      this.c.send({ type: 'text', text: user });
      end = (await this.wait((m) => m.json && ['response_done', 'interrupted'].includes(m.json.type), from)).json;
    }
    if (end && end.type === 'response_done') {
      this.finished.push({ turn_id: end.turn_id, user, reply: end.text });
      reportPlayedOut(this.c, this.c.msgs.slice(from));
    }
    for (const m of this.c.msgs.slice(from)) if (m.json && m.json.type === 'error' && m.json.code !== 'server_draining') this.errors.push(`${m.json.code}: ${m.json.message}`);
  }

  // Turns until `done()` says stop, reconnecting whenever the connection ends.
  async run(done) {
    await this.connect();
    this.c.send({ type: 'start', sample_rate: 16000, tts: true });
    while (!done()) {
      try {
        await this.turn();
        await sleep(50);
      } catch (e) {
        if (!(e instanceof Closed)) throw e;
        await this.connect();
        this.c.send({ type: 'start', sample_rate: 16000, tts: true });
      }
    }
    await this.c.close();
  }
}


test('cluster: 8 voice clients over HAProxy; one node killed (kill -9), the other drained (SIGTERM): every conversation resumes on the other node with its whole history, no finished turn missing from PostgreSQL', { skip: haveCluster ? false : 'needs llama-server and haproxy (scripts/packages.txt)', timeout: 600000 }, async () => {
  const pg = await startPostgres();
  const llms = await Promise.all([llamaServer({ slots: CLIENTS, ctx: 8192 }), llamaServer({ slots: CLIENTS, ctx: 8192 })]);
  const args = ['--store', pg.url, '--llm-url', llms[0].url, '--llm-url', llms[1].url, '--llm-shared', '--trusted-proxy', '127.0.0.1', '--max-tokens', '40', '--drain-seconds', '30'];
  const ports = [await freePort(), await freePort()];
  const nodes = await Promise.all(ports.map((p) => startNode(p, args)));
  const lb = await startHaproxy(ports.map((p) => `127.0.0.1:${p}`));
  const talkers = [];
  try {
    await until('HAProxy to see both nodes up', async () => Object.values(await lb.states()).join() === 'UP,UP', 15000);
    // Phase 1: both nodes serve; HAProxy spreads the sessions (fewest connections first).
    let phase = 1;
    const runs = [];
    for (let n = 0; n < CLIENTS; n++) {
      const t = new Talker(n, lb);
      talkers.push(t);
      runs.push(t.run(() => phase === 4));
    }
    const all = (k) => talkers.every((t) => t.finished.length >= k);
    const failed = Promise.all(runs); // a client that throws fails the test at once
    const watch = (what, cond, ms) => Promise.race([until(what, cond, ms), failed.then(() => { throw new Error('the clients stopped early'); })]);
    await watch('2 finished turns for every client', () => all(2), 120000);
    const spread = await Promise.all(nodes.map(async (nd) => Number(/^parley_sessions (\S+)/m.exec(await (await fetch(`${nd.url}/metrics`)).text())[1])));
    assert.ok(spread.every((k) => k > 0), `HAProxy spread the sessions over both nodes: ${spread}`);

    // Phase 2: node 1 dies without a word. Its clients reconnect through HAProxy to node 2.
    phase = 2;
    nodes[0].proc.kill('SIGKILL');
    await nodes[0].exited;
    await watch('4 finished turns for every client, on node 2', () => all(4), 180000);
    assert.equal(Number(/^parley_sessions (\S+)/m.exec(await (await fetch(`${nodes[1].url}/metrics`)).text())[1]), CLIENTS, 'every session is on node 2');

    // Node 1 comes back (same port, same store); then node 2 is drained.
    nodes[0] = await startNode(ports[0], args);
    await until('HAProxy to see node 1 up again', async () => (await lb.states()).node1 === 'UP', 15000);
    phase = 3;
    nodes[1].proc.kill('SIGTERM');
    const drained = await nodes[1].exited;
    assert.equal(drained.code, 0, 'node 2 drained and exited cleanly');
    assert.match(nodes[1].log(), /draining/i);
    await watch('6 finished turns for every client, on node 1', () => all(6), 180000);
    phase = 4;
    await failed;

    // Every client came back to its own session, with its whole history each time.
    for (const t of talkers) {
      assert.ok(t.resumes.length >= 1, `client ${t.n} was moved at least once (the drain moves everyone)`);
      for (const r of t.resumes) {
        assert.equal(r.resumed, true, `client ${t.n}: resumed`);
        assert.ok(r.turns >= r.finished, `client ${t.n}: resumed with ${r.turns} stored turns after ${r.finished} finished ones`);
      }
      assert.deepEqual(t.errors, [], `client ${t.n}: no errors but server_draining`);
    }
    // Every finished turn is in PostgreSQL, as the client got it, and readable through HAProxy.
    const problems = [];
    for (const t of talkers) {
      const rows = JSON.parse(pg.sql(`SELECT coalesce(json_agg(json_build_object('id', turn_id, 'interrupted', interrupted, 'user', user_text, 'reply', reply_text)), '[]') FROM turns WHERE session_id = '${t.sid}'`));
      const stored = new Map(rows.map((r) => [r.id, { interrupted: r.interrupted, user: r.user, reply: r.reply }]));
      for (const f of t.finished) {
        const s = stored.get(f.turn_id);
        if (!s) problems.push(`client ${t.n}: finished turn ${f.turn_id} is not in PostgreSQL`);
        else if (s.interrupted || s.user !== f.user || s.reply !== f.reply) problems.push(`client ${t.n}: turn ${f.turn_id} stored as ${JSON.stringify(s)}, the client got ${JSON.stringify(f)}; events ${JSON.stringify([...t.events, ...t.c.msgs.filter((m) => m.json && ['interrupted', 'resumed'].includes(m.json.type)).map((m) => m.json)].filter((e) => e.turn_id === f.turn_id))}`);
      }
      const hist = await (await fetchHistory(lb.url, t.sid, t.token)).json();
      const ids = new Set(hist.turns.map((x) => x.turn_id));
      for (const f of t.finished) if (!ids.has(f.turn_id)) problems.push(`client ${t.n}: turn ${f.turn_id} missing from GET /sessions through HAProxy`);
    }
    assert.deepEqual(problems, []);
    const total = talkers.reduce((a, t) => a + t.finished.length, 0);
    assert.ok(total >= CLIENTS * 6, `${total} finished turns`);
    const refused = nodes.map((nd) => (nd.log().match(/was resumed by another connection/g) || []).length).reduce((a, b) => a + b, 0);
    console.log(`cluster: ${total} finished turns, ${talkers.reduce((a, t) => a + t.resumes.length, 0)} resumes through HAProxy, ${refused} late write(s) of a node that had lost its session refused`);
  } finally {
    for (const t of talkers) if (t.c) t.c.ws.close();
    await lb.stop();
    for (const nd of nodes) if (nd.proc.exitCode === null && nd.proc.signalCode === null) nd.proc.kill('SIGKILL');
    await Promise.all(llms.map((l) => l.stop()));
    await pg.stop();
  }
});

test('HAProxy (deploy/haproxy.cfg) sends a session that a draining node refuses with 503 to another node', { skip: haveCluster ? false : 'needs haproxy', timeout: 120000 }, async () => {
  // Node 1 is a node in the middle of draining: healthy to a check that came just before, and
  // every WebSocket upgrade answered 503 server_draining.
  let refused = 0;
  const draining = createServer((req, res) => res.end('{"status":"ok"}'));
  draining.on('upgrade', (req, socket) => {
    refused++;
    const body = '{"code":"server_draining"}';
    socket.end(`HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
  });
  await new Promise((ok) => draining.listen(0, '127.0.0.1', ok));
  const s = await startServer([]);
  const lb = await startHaproxy([`127.0.0.1:${draining.address().port}`, `127.0.0.1:${s.port}`]);
  const clients = [];
  try {
    await until('HAProxy to see both up', async () => Object.values(await lb.states()).join() === 'UP,UP', 15000);
    for (let i = 0; i < 10; i++) {
      const c = await Client.open(lb.ws);
      clients.push(c);
      await c.waitType('ready');
    }
    assert.ok(refused >= 1, 'the first session went to the draining node first');
    assert.equal(Number(/^parley_sessions (\S+)/m.exec(await (await fetch(`${s.url}/metrics`)).text())[1]), 10, 'every session reached the other node');
  } finally {
    for (const c of clients) c.ws.close();
    await lb.stop();
    await s.stop();
    draining.close();
  }
});
