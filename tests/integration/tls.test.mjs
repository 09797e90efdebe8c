// TLS: HTTPS and WSS on the server's port (--tls self-signed, --tls-cert/--tls-key), checked by
// clients that verify the certificate (node with NODE_EXTRA_CA_CERTS, as an SDK would be run).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { startServer, tempDir, httpGet } from '../lib/parley.mjs';

// GET over HTTPS trusting `ca`; resolves to { status, body } or rejects with the TLS error.
function httpsGet(url, ca, headers = {}) {
  return new Promise((ok, fail) => {
    const req = request(url, { ca, headers }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => ok({ status: res.statusCode, body }));
    });
    req.on('error', fail);
    req.end();
  });
}

// A WebSocket upgrade over HTTPS with this Origin; resolves to the status (101: accepted).
function httpsUpgrade(url, ca, origin) {
  return new Promise((ok, fail) => {
    const req = request(url, { ca, headers: { Origin: origin, Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==' } });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      ok(res.statusCode);
    });
    req.on('response', (res) => {
      res.resume();
      ok(res.statusCode);
    });
    req.on('error', fail);
    req.end();
  });
}

// A typed turn over wss:// in a separate node that trusts the certificate the way the official
// SDKs are told to (NODE_EXTRA_CA_CERTS); resolves to what it printed.
function wssTurn(wsUrl, certFile) {
  const code = `
    const ws = new WebSocket(process.argv[1]);
    const seen = [];
    ws.onmessage = (e) => {
      if (typeof e.data !== 'string') return;
      const m = JSON.parse(e.data);
      seen.push(m.type);
      if (m.type === 'ready') ws.send(JSON.stringify({ type: 'text', text: 'Hello there.' }));
      if (m.type === 'response_done') { console.log(JSON.stringify({ seen, text: m.text })); process.exit(0); }
    };
    ws.onerror = (e) => { console.log(JSON.stringify({ error: String(e.message || e.error || e) })); process.exit(1); };
    setTimeout(() => { console.log(JSON.stringify({ error: 'timeout', seen })); process.exit(1); }, 30000);`;
  return new Promise((ok) => {
    execFile(process.execPath, ['-e', code, wsUrl], { env: { ...process.env, NODE_EXTRA_CA_CERTS: certFile } }, (err, stdout) => ok(JSON.parse(stdout.trim().split('\n').pop() || '{}')));
  });
}

test('--tls self-signed: HTTPS and WSS verified against the certificate it keeps; the same certificate after a restart', async () => {
  const dir = tempDir();
  const args = ['--tls', 'self-signed', '--tls-dir', join(dir, 'tls')];
  let s = await startServer(args, { db: join(dir, 'parley.db') });
  const cert = join(dir, 'tls', 'cert.pem');
  const ca = readFileSync(cert);
  try {
    assert.match(s.log(), /listening on https:\/\/127\.0\.0\.1:\d+/);
    const fp = /fingerprint ([0-9A-F:]{95})/.exec(s.log())[1];
    for (const host of ['localhost', '127.0.0.1']) {
      const r = await httpsGet(`https://${host}:${s.port}/health`, ca);
      assert.equal(r.status, 200);
      assert.equal(JSON.parse(r.body).status, 'ok');
    }
    // Not trusted without the certificate.
    await assert.rejects(httpsGet(`https://localhost:${s.port}/health`, undefined), /self-signed|self signed|unable to verify/);
    const turn = await wssTurn(`wss://localhost:${s.port}/ws`, cert);
    assert.ok(turn.text, JSON.stringify(turn));
    assert.equal(turn.seen[0], 'ready');
    // Over TLS the page's own origin is https://, scheme included.
    assert.equal(await httpsUpgrade(`https://localhost:${s.port}/ws`, ca, `https://localhost:${s.port}`), 101);
    assert.equal(await httpsUpgrade(`https://localhost:${s.port}/ws`, ca, `http://localhost:${s.port}`), 403);
    // Plain HTTP still serves this machine's own clients on the same port.
    assert.equal((await httpGet(s.port, '/health')).status, 200);
    await s.stop();
    s = await startServer(args, { db: join(dir, 'parley.db') });
    assert.equal(/fingerprint ([0-9A-F:]{95})/.exec(s.log())[1], fp);
    assert.match(s.log(), /using the self-signed certificate/);
  } finally {
    await s.stop();
  }
});

test('--tls-cert and --tls-key: served with the given pair; a missing file or a key of another certificate refuses to start, naming it', async () => {
  const dir = tempDir();
  // Two certificates made by the server itself, in two folders.
  for (const name of ['a', 'b']) {
    const s = await startServer(['--tls', 'self-signed', '--tls-dir', join(dir, name)], { withModel: false });
    await s.stop();
  }
  const s = await startServer(['--tls-cert', join(dir, 'a', 'cert.pem'), '--tls-key', join(dir, 'a', 'key.pem')], { withModel: false });
  try {
    const r = await httpsGet(`https://localhost:${s.port}/health`, readFileSync(join(dir, 'a', 'cert.pem')));
    assert.equal(r.status, 200);
  } finally {
    await s.stop();
  }
  await assert.rejects(startServer(['--tls-cert', join(dir, 'a', 'cert.pem'), '--tls-key', join(dir, 'b', 'key.pem')], { withModel: false }), /tls: key .*b\/key\.pem: key values mismatch/);
  await assert.rejects(startServer(['--tls-cert', join(dir, 'missing.pem'), '--tls-key', join(dir, 'a', 'key.pem')], { withModel: false }), /missing\.pem holds no PEM certificate/);
  await assert.rejects(startServer(['--tls-cert', join(dir, 'a', 'cert.pem')], { withModel: false }), /give both --tls-cert FILE and --tls-key FILE/);
});

test('with TLS on another address, plain HTTP from another machine gets 400 and the reason', async (t) => {
  const ip = Object.values(networkInterfaces()).flat().find((a) => a.family === 'IPv4' && !a.internal);
  if (!ip) return t.skip('no address here but loopback');
  const dir = tempDir();
  const s = await startServer(['--host', '0.0.0.0', '--api-key', 'k', '--tls', 'self-signed', '--tls-dir', join(dir, 'tls'), '--allow-host', ip.address], { withModel: false });
  try {
    const plain = await fetch(`http://${ip.address}:${s.port}/health`);
    assert.equal(plain.status, 400);
    assert.match((await plain.json()).error, /speaks TLS.*https:\/\//);
    const r = await httpsGet(`https://${ip.address}:${s.port}/health`, readFileSync(join(dir, 'tls', 'cert.pem')));
    assert.equal(r.status, 200);
  } finally {
    await s.stop();
  }
});
