// Profiles (`parley serve --profile NAME`): a whole set of engines from the manifest. Missing
// models are pulled from the hub (a local HTTP server standing in for it, HF_ENDPOINT); when the
// hub can't be reached the offline engines stand in and the log says what is missing. The models
// served are the tiny ones the unit tests generate in the real formats, plus stories260K.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { startServer, Client, bin, model, repo, tempDir } from '../lib/parley.mjs';

const gen = resolve(repo, 'build/test-models');
const sources = {
  'tiny-whisper.bin': `${gen}/tiny-whisper.bin`,
  'tiny-piper.onnx': `${gen}/piper/tiny-piper.onnx`,
  'tiny-piper.onnx.json': `${gen}/piper/tiny-piper.onnx.json`,
  [basename(model)]: model,
};
const have = Object.values(sources).every((p) => existsSync(p));
const skip = have ? false : 'generated models missing: run the unit tests first (make test does)';

const sha = (buf) => createHash('sha256').update(buf).digest('hex');
let hub, hubPort, closedPort, manifestPath;
const requested = [];

function file(name) {
  const buf = readFileSync(sources[name]);
  return { name, url: `https://huggingface.co/org/repo/resolve/main/${name}`, size: buf.length, sha256: sha(buf) };
}

function entry(name, task, engine, files) {
  return { name, task, engine, description: `test ${task} model`, upstream: 'https://example.invalid',
    license: 'test', files };
}

before(async () => {
  if (!have) return;
  hub = createServer((req, res) => {
    const name = decodeURIComponent(new URL(req.url, 'http://x').pathname).split('/').pop();
    requested.push(name);
    if (!sources[name]) {
      res.writeHead(404);
      return res.end('Entry not found');
    }
    const buf = readFileSync(sources[name]);
    res.writeHead(200, { 'Content-Length': buf.length });
    res.end(buf);
  });
  await new Promise((ok) => hub.listen(0, '127.0.0.1', ok));
  hubPort = hub.address().port;
  const closed = createServer();
  await new Promise((ok) => closed.listen(0, '127.0.0.1', ok));
  closedPort = closed.address().port;
  await new Promise((ok) => closed.close(ok));

  const manifest = {
    version: 1,
    models: [
      entry('test-whisper', 'asr', 'whisper', [file('tiny-whisper.bin')]),
      entry('test-llm', 'llm', 'llama', [file(basename(model))]),
      entry('test-piper', 'tts', 'piper', [file('tiny-piper.onnx'), file('tiny-piper.onnx.json')]),
    ],
    default_profile: 'quality',
    profiles: [
      { name: 'offline', description: 'nothing downloaded', asr: 'pocketsphinx', tts: 'espeak', llm: ['test-llm'], pull: false },
      { name: 'quality', description: 'the pulled engines', asr: 'test-whisper', llm: 'test-llm', tts: 'test-piper' },
    ],
  };
  manifestPath = join(tempDir(), 'manifest.json');
  writeFileSync(manifestPath, JSON.stringify(manifest));
});

after(() => hub && hub.close());

async function health(s) {
  return (await fetch(`${s.url}/health`)).json();
}

test('a profile pulls what is missing, then serves with those engines', { skip }, async () => {
  const cache = tempDir();
  const env = { PARLEY_MANIFEST: manifestPath, PARLEY_MODELS: cache, HF_ENDPOINT: `http://127.0.0.1:${hubPort}`, PARLEY_MODEL_MIRROR: '' };
  const s = await startServer(['--profile', 'default', '--max-tokens', '16'], { withModel: false, env });
  try {
    const h = await health(s);
    assert.equal(h.asr, 'whisper');
    assert.equal(h.tts, 'piper');
    assert.ok(h.llm, 'an LLM is loaded');
    for (const name of ['test-whisper', 'test-llm', 'test-piper'])
      assert.match(s.log(), new RegExp(`pulling ${name}`));
    assert.match(s.log(), /asr: test-whisper \(pulled\)/);
    assert.ok(existsSync(join(cache, 'test-piper', 'tiny-piper.onnx.json')));
    // The profile's engines answer a turn, with Piper's audio.
    const c = await Client.open(s.ws);
    await c.waitType('ready');
    c.send({ type: 'text', text: 'Hello there.' });
    await c.waitType('response_done');
    assert.ok(c.msgs.some((m) => m.binary), 'audio was sent');
    await c.close();
  } finally {
    await s.stop();
  }
  // A second start finds everything on disk and needs no hub at all.
  const before = requested.length;
  const env2 = { ...env, HF_ENDPOINT: `http://127.0.0.1:${closedPort}` };
  const s2 = await startServer(['--profile', 'quality'], { withModel: false, env: env2 });
  try {
    assert.equal(requested.length, before, 'nothing was downloaded again');
    assert.match(s2.log(), /asr: test-whisper \(on disk\)/);
    assert.equal((await health(s2)).tts, 'piper');
  } finally {
    await s2.stop();
  }
});

test('offline, a profile says what is missing and the offline engines stand in', { skip }, async () => {
  const mirror = resolve(model, '..');
  const env = { PARLEY_MANIFEST: manifestPath, PARLEY_MODELS: tempDir(), HF_ENDPOINT: `http://127.0.0.1:${closedPort}`, PARLEY_MODEL_MIRROR: mirror };
  const s = await startServer(['--profile', 'quality'], { withModel: false, env });
  try {
    const h = await health(s);
    assert.equal(h.asr, 'pocketsphinx');
    assert.equal(h.tts, 'espeak-ng');
    assert.ok(h.llm, 'the LLM came from the local mirror');
    const log = s.log();
    assert.match(log, /asr: test-whisper is missing \(.*cannot reach/);
    assert.match(log, /tts: test-piper is missing/);
    assert.match(log, /asr: pocketsphinx \(built in, offline stand-in\)/);
    assert.match(log, /llm: test-llm \(on disk\)/);
    assert.match(log, /2 model\(s\) could not be had/);
  } finally {
    await s.stop();
  }
});

test('flags override single engines of a profile; unknown profiles are refused', { skip }, async () => {
  const env = { PARLEY_MANIFEST: manifestPath, PARLEY_MODELS: tempDir(), HF_ENDPOINT: `http://127.0.0.1:${hubPort}`, PARLEY_MODEL_MIRROR: '' };
  const s = await startServer(['--profile', 'quality', '--tts', 'espeak', '--asr', 'pocketsphinx'], { withModel: false, env });
  try {
    const h = await health(s);
    assert.equal(h.asr, 'pocketsphinx');
    assert.equal(h.tts, 'espeak-ng');
    assert.doesNotMatch(s.log(), /pulling test-whisper|pulling test-piper/);
  } finally {
    await s.stop();
  }
  const p = spawn(bin, ['serve', '--port', '0', '--profile', 'fastest'], { env: { ...process.env, ...env } });
  let err = '';
  p.stderr.on('data', (d) => (err += d));
  const code = await new Promise((ok) => p.on('exit', ok));
  assert.equal(code, 2);
  assert.match(err, /no profile named 'fastest' \(known: offline, quality\)/);
});
