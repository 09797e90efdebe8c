// `parley models`: pulls from a local HTTP server standing in for the Hugging Face hub
// (HF_ENDPOINT), with Range resumes, 404/401, a cut connection, wrong bytes, the hub's
// X-Linked-ETag/X-Linked-Size, a local mirror, a full disk, no network; then list/path/rm.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { bin, model, tempDir } from '../lib/parley.mjs';

const sha = (buf) => createHash('sha256').update(buf).digest('hex');
const HUB = 'https://huggingface.co/org/repo/resolve/main';
const TOKEN = 'hf_test_token';

// Deterministic-enough test files of a few sizes.
const files = {
  'ok.bin': randomBytes(300_000),
  'cut.bin': randomBytes(1_000_000),
  'bad.bin': randomBytes(50_000),
  'gated.bin': randomBytes(20_000),
  'hf.bin': randomBytes(200_000),
  'hfbad.bin': randomBytes(10_000),
  'slow.bin': randomBytes(400_000),
  'norange.bin': randomBytes(100_000),
  'mirror.bin': randomBytes(40_000),
  'main.gguf': randomBytes(30_000),
  'extra.json': Buffer.from('{"x": 1}\n'),
  'full.bin': randomBytes(100_000),
};

let server, port, closedPort;
const seen = []; // {path, range, auth}

function sendFile(req, res, name, buf, { ignoreRange = false, headers = {} } = {}) {
  const m = /^bytes=(\d+)-$/.exec(req.headers.range || '');
  if (m && !ignoreRange) {
    const start = Number(m[1]);
    if (start >= buf.length) {
      res.writeHead(416, { 'Content-Range': `bytes */${buf.length}` });
      return res.end();
    }
    res.writeHead(206, { ...headers, 'Content-Length': buf.length - start,
      'Content-Range': `bytes ${start}-${buf.length - 1}/${buf.length}`, 'Accept-Ranges': 'bytes' });
    return res.end(buf.subarray(start));
  }
  res.writeHead(200, { ...headers, 'Content-Length': buf.length, 'Accept-Ranges': 'bytes' });
  res.end(buf);
}

function handle(req, res) {
  const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
  seen.push({ path, range: req.headers.range || null, auth: req.headers.authorization || null });
  const cdn = /^\/cdn\/(.+)$/.exec(path);
  if (cdn && files[cdn[1]]) return sendFile(req, res, cdn[1], files[cdn[1]]);
  const m = /^\/org\/repo\/resolve\/main\/(.+)$/.exec(path);
  const name = m && m[1];
  if (!name || name === 'missing.bin' || !files[name]) {
    res.writeHead(404, { 'Content-Type': 'text/plain' });
    return res.end('Entry not found');
  }
  const buf = files[name];
  switch (name) {
    case 'gated.bin':
      if (req.headers.authorization !== `Bearer ${TOKEN}`) {
        res.writeHead(401, { 'Content-Type': 'text/plain' });
        return res.end('Access to model org/repo is restricted.');
      }
      return sendFile(req, res, name, buf);
    case 'cut.bin':
      if (!req.headers.range) {
        // The whole file is announced; half of it arrives, then the connection dies.
        res.writeHead(200, { 'Content-Length': buf.length });
        res.write(buf.subarray(0, buf.length / 2));
        setTimeout(() => res.socket.destroy(), 100);
        return;
      }
      return sendFile(req, res, name, buf);
    case 'bad.bin':
      return sendFile(req, res, name, randomBytes(buf.length)); // not what the manifest says
    case 'hf.bin':
    case 'hfbad.bin': {
      // Like the hub's resolve URL of an LFS file: a redirect carrying the LFS sha256 and size.
      const etag = name === 'hf.bin' ? sha(buf) : sha(Buffer.from('something else'));
      res.writeHead(302, { Location: `/cdn/${name}`, 'X-Linked-Etag': `"${etag}"`,
        'X-Linked-Size': String(buf.length), ETag: '"not-the-sha"' });
      return res.end();
    }
    case 'slow.bin': {
      // 10 pieces over ~3 s, so that progress lines have time to appear.
      res.writeHead(200, { 'Content-Length': buf.length });
      let i = 0;
      const piece = buf.length / 10;
      const timer = setInterval(() => {
        res.write(buf.subarray(i * piece, (i + 1) * piece));
        if (++i === 10) {
          clearInterval(timer);
          res.end();
        }
      }, 300);
      return;
    }
    case 'norange.bin':
      return sendFile(req, res, name, buf, { ignoreRange: true });
    default:
      return sendFile(req, res, name, buf);
  }
}

const entry = (name, fileList, extra = {}) => ({
  name, task: 'llm', engine: 'llama', description: `test model ${name}`, upstream: 'https://example.org',
  license: 'MIT', files: fileList, ...extra,
});
const f = (name, { withSha = true, withSize = true } = {}) => ({
  name, url: `${HUB}/${name}`,
  ...(withSize ? { size: files[name].length } : {}),
  ...(withSha ? { sha256: sha(files[name]) } : {}),
});

let dir, manifest, cache, mirror;

before(async () => {
  server = createServer(handle);
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  port = server.address().port;
  // A port nobody listens on: bind, note, close.
  const s2 = createServer();
  await new Promise((ok) => s2.listen(0, '127.0.0.1', ok));
  closedPort = s2.address().port;
  await new Promise((ok) => s2.close(ok));

  dir = tempDir();
  cache = join(dir, 'cache');
  mirror = join(dir, 'mirror');
  mkdirSync(mirror);
  writeFileSync(join(mirror, 'mirror.bin'), files['mirror.bin']);
  writeFileSync(join(mirror, 'bad.bin'), randomBytes(files['bad.bin'].length)); // right size, wrong bytes
  manifest = join(dir, 'manifest.json');
  writeFileSync(manifest, JSON.stringify({
    version: 1,
    models: [
      entry('ok', [f('ok.bin')]),
      entry('missing', [{ name: 'missing.bin', url: `${HUB}/missing.bin` }]),
      entry('gated', [f('gated.bin')]),
      entry('cut', [f('cut.bin')]),
      entry('bad', [f('bad.bin')]),
      entry('hf', [f('hf.bin', { withSha: false, withSize: false })]),
      entry('hfbad', [f('hfbad.bin', { withSha: false, withSize: false })]),
      entry('slow', [f('slow.bin')]),
      entry('norange', [f('norange.bin')]),
      entry('mirror', [f('mirror.bin')]),
      entry('voice', [f('main.gguf'), f('extra.json')], { task: 'tts', engine: 'piper' }),
      entry('full', [f('full.bin')]),
      entry('hubpath', [{ name: 'ok.bin', url: 'org/repo/resolve/main/ok.bin', sha256: sha(files['ok.bin']) }]),
    ],
  }, null, 2));
});

after(() => new Promise((ok) => server.close(ok)));

// Runs `parley models ...` without blocking the event loop (the server lives in this process).
function models(args, env = {}) {
  return new Promise((ok) => {
    const base = { ...process.env };
    for (const k of ['PARLEY_MANIFEST', 'PARLEY_MODELS', 'PARLEY_MODEL_MIRROR', 'HF_ENDPOINT', 'HF_TOKEN', 'XDG_CACHE_HOME'])
      delete base[k];
    const proc = spawn(bin, ['models', ...args], {
      env: { ...base, PARLEY_MANIFEST: manifest, PARLEY_MODELS: cache, HF_ENDPOINT: `http://127.0.0.1:${port}`, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '', stderr = '';
    proc.stdout.on('data', (d) => (stdout += d));
    proc.stderr.on('data', (d) => (stderr += d));
    proc.on('exit', (code) => ok({ code, stdout, stderr }));
  });
}

const inCache = (model, file) => join(cache, model, file);
const lastLine = (s) => s.trim().split('\n').pop();
const requestsFor = (name) => seen.filter((r) => r.path.endsWith('/' + name));

test('pull fetches, verifies and prints the path; quiet progress lines when not a terminal', async () => {
  const r = await models(['pull', 'ok']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim(), inCache('ok', 'ok.bin'));
  assert.equal(sha(readFileSync(inCache('ok', 'ok.bin'))), sha(files['ok.bin']));
  assert.match(r.stderr, /ok\.bin: downloading 293 KiB from http:\/\/127\.0\.0\.1:\d+\/org\/repo\/resolve\/main\/ok\.bin/);
  assert.match(r.stderr, /ok\.bin: done, 293 KiB in [\d.]+ s .*sha256 ok/);
  assert.ok(!r.stderr.includes('\r'), 'no terminal control when stderr is not a terminal');
  assert.ok(!existsSync(inCache('ok', 'ok.bin.part')));
  // Pulling again fetches nothing.
  const n = requestsFor('ok.bin').length;
  const again = await models(['pull', 'ok']);
  assert.equal(again.code, 0);
  assert.match(again.stderr, /already in the cache/);
  assert.equal(requestsFor('ok.bin').length, n);
});

test('list, path and rm', async () => {
  await models(['pull', 'voice']);
  const list = await models(['list']);
  assert.equal(list.code, 0, list.stderr);
  const rows = Object.fromEntries(list.stdout.trim().split('\n').slice(1).map((l) => [l.split(/\s+/)[0], l]));
  assert.match(rows.ok, /^ok\s+llm\s+293 KiB\s+pulled\s+test model ok$/);
  assert.match(rows.missing, /^missing\s+llm\s+\?\s+-\s+test model missing$/);
  assert.match(rows.voice, /\stts\s.*pulled/);
  // path: the main (first) file.
  const p = await models(['path', 'voice']);
  assert.equal(p.code, 0);
  assert.equal(p.stdout.trim(), inCache('voice', 'main.gguf'));
  assert.ok(existsSync(inCache('voice', 'extra.json')));
  const rm = await models(['rm', 'voice']);
  assert.equal(rm.code, 0);
  assert.ok(!existsSync(join(cache, 'voice')));
  const gone = await models(['path', 'voice']);
  assert.equal(gone.code, 2);
  assert.equal(gone.stderr.trim().split('\n').length, 1);
  assert.match(gone.stderr, /voice is not pulled/);
  assert.equal(gone.stdout, '');
});

test('models path alone prints the cache folder', async () => {
  const r = await models(['path']);
  assert.equal(r.code, 0);
  assert.equal(r.stdout.trim(), cache);
});

test('bad input: unknown model, unknown command, broken manifest (exit 2, one line)', async () => {
  for (const args of [['pull', 'nope'], ['path', 'nope'], ['rm', 'nope'], ['fly'], ['pull']]) {
    const r = await models(args);
    assert.equal(r.code, 2, args.join(' '));
    assert.match(r.stderr, /^parley: models: /);
  }
  const unknown = await models(['pull', 'nope']);
  assert.equal(unknown.stderr.trim().split('\n').length, 1);
  assert.match(unknown.stderr, /unknown model 'nope'/);
  const broken = join(dir, 'broken.json');
  writeFileSync(broken, JSON.stringify({ models: [{ name: 'x', task: 'dance', files: [] }] }));
  const r = await models(['list'], { PARLEY_MANIFEST: broken });
  assert.equal(r.code, 2);
  assert.equal(r.stderr.trim().split('\n').length, 1);
  assert.match(r.stderr, /broken\.json: models\[0\]/);
});

test('404 is a clear one-line error and leaves nothing behind', async () => {
  const r = await models(['pull', 'missing']);
  assert.equal(r.code, 1);
  assert.match(lastLine(r.stderr), /missing\.bin: not found \(HTTP 404\)/);
  assert.ok(!existsSync(join(cache, 'missing')));
});

test('401 asks for HF_TOKEN; the token goes as a bearer header', async () => {
  const r = await models(['pull', 'gated']);
  assert.equal(r.code, 1);
  assert.match(lastLine(r.stderr), /access denied \(HTTP 401\).*set HF_TOKEN/);
  const wrong = await models(['pull', 'gated'], { HF_TOKEN: 'hf_wrong' });
  assert.equal(wrong.code, 1);
  assert.match(lastLine(wrong.stderr), /HF_TOKEN was refused/);
  const ok = await models(['pull', 'gated'], { HF_TOKEN: TOKEN });
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(requestsFor('gated.bin').at(-1).auth, `Bearer ${TOKEN}`);
  assert.equal(sha(readFileSync(inCache('gated', 'gated.bin'))), sha(files['gated.bin']));
  // Not sent to hosts other than the hub.
  assert.ok(requestsFor('ok.bin').every((q) => q.auth === null));
});

test('a cut connection keeps the .part; the next pull resumes it with a Range request', async () => {
  const first = await models(['pull', 'cut']);
  assert.equal(first.code, 1);
  assert.match(lastLine(first.stderr), /cut\.bin: connection lost after .* run the command again to resume/);
  const part = inCache('cut', 'cut.bin.part');
  assert.ok(existsSync(part));
  const kept = statSync(part).size;
  assert.ok(kept > 0 && kept < files['cut.bin'].length, `kept ${kept}`);
  const second = await models(['pull', 'cut']);
  assert.equal(second.code, 0, second.stderr);
  assert.match(second.stderr, /cut\.bin: resuming at/);
  assert.equal(requestsFor('cut.bin').at(-1).range, `bytes=${kept}-`);
  assert.equal(sha(readFileSync(inCache('cut', 'cut.bin'))), sha(files['cut.bin']));
  assert.ok(!existsSync(part));
});

test('a server that ignores Range: the .part is dropped and the file fetched whole', async () => {
  mkdirSync(join(cache, 'norange'), { recursive: true });
  writeFileSync(inCache('norange', 'norange.bin.part'), Buffer.from('stale bytes from some other file'));
  const r = await models(['pull', 'norange']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /ignored the range request; starting over/);
  assert.equal(sha(readFileSync(inCache('norange', 'norange.bin'))), sha(files['norange.bin']));
});

test('wrong bytes: checksum mismatch, nothing left in the cache', async () => {
  const r = await models(['pull', 'bad']);
  assert.equal(r.code, 1);
  assert.match(lastLine(r.stderr), /bad\.bin: checksum mismatch: expected sha256 [0-9a-f]{64}, got [0-9a-f]{64}; the download was deleted/);
  assert.ok(!existsSync(join(cache, 'bad')));
});

test('no checksum in the manifest: the hub\'s X-Linked-ETag and X-Linked-Size are used', async () => {
  const r = await models(['pull', 'hf']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /hf\.bin: done, .*sha256 ok/);
  assert.equal(sha(readFileSync(inCache('hf', 'hf.bin'))), sha(files['hf.bin']));
  const bad = await models(['pull', 'hfbad']);
  assert.equal(bad.code, 1);
  assert.match(lastLine(bad.stderr), /hfbad\.bin: checksum mismatch: expected sha256 /);
  assert.ok(!existsSync(join(cache, 'hfbad')));
});

test('hub paths in the manifest are resolved against HF_ENDPOINT', async () => {
  const r = await models(['pull', 'hubpath']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(sha(readFileSync(inCache('hubpath', 'ok.bin'))), sha(files['ok.bin']));
});

test('a slow download prints periodic progress lines; a second pull of it meanwhile is refused', async () => {
  const first = models(['pull', 'slow']);
  await new Promise((ok) => setTimeout(ok, 800));
  const second = await models(['pull', 'slow']);
  assert.equal(second.code, 1);
  assert.match(lastLine(second.stderr), /slow\.bin: another parley is downloading/);
  const r = await first;
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stderr.split('\n').filter((l) => /slow\.bin: +\d+% [\d.]+ KiB\/\d+ KiB .*\/s .* left/.test(l));
  assert.ok(lines.length >= 1 && lines.length <= 5, r.stderr);
});

test('the mirror serves a file without the network; a wrong mirror copy is ignored', async () => {
  const before = requestsFor('mirror.bin').length;
  const r = await models(['pull', 'mirror'], { PARLEY_MODEL_MIRROR: mirror, HF_ENDPOINT: `http://127.0.0.1:${closedPort}` });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /mirror\.bin: (linked|copied) from the mirror .*sha256 ok/);
  assert.equal(requestsFor('mirror.bin').length, before);
  assert.equal(sha(readFileSync(inCache('mirror', 'mirror.bin'))), sha(files['mirror.bin']));
  // bad.bin in the mirror has the wrong bytes: refused, and then fetched (and refused) online.
  const bad = await models(['pull', 'bad'], { PARLEY_MODEL_MIRROR: mirror });
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /bad\.bin: ignoring the mirror's copy: .*sha256 [0-9a-f]{64}, expected/);
  assert.ok(!existsSync(join(cache, 'bad')));
});

test('offline: one line that says the server cannot be reached', async () => {
  const r = await models(['pull', 'ok'], { HF_ENDPOINT: `http://127.0.0.1:${closedPort}`, PARLEY_MODELS: join(dir, 'offline') });
  assert.equal(r.code, 1);
  assert.match(lastLine(r.stderr), /ok\.bin: cannot reach the server \(offline\?\).*PARLEY_MODEL_MIRROR/);
  assert.ok(!existsSync(join(dir, 'offline', 'ok')));
});

test('disk full (ENOSPC) is reported as such', { skip: !existsSync('/dev/full') && 'no /dev/full' }, async () => {
  // The .part is a link to /dev/full: every write fails with ENOSPC.
  mkdirSync(join(cache, 'full'), { recursive: true });
  symlinkSync('/dev/full', inCache('full', 'full.bin.part'));
  const r = await models(['pull', 'full']);
  assert.equal(r.code, 1);
  assert.match(lastLine(r.stderr), /full\.bin: disk full .*No space left on device/);
  assert.ok(!existsSync(inCache('full', 'full.bin')));
});

test('the repository manifest: stories260k from ../shared/models without the network', async (t) => {
  const shared = dirname(model); // ../shared/models, or PARLEY_TEST_MODEL's folder
  if (!existsSync(join(shared, 'stories260K.gguf'))) return t.skip(`no stories260K.gguf in ${shared}`);
  const env = { PARLEY_MANIFEST: '', PARLEY_MODEL_MIRROR: shared, HF_ENDPOINT: `http://127.0.0.1:${closedPort}`,
    PARLEY_MODELS: join(dir, 'real') };
  const r = await models(['pull', 'stories260k'], env); // the default manifest: <exe>/../models
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /stories260K\.gguf: (linked|copied) from the mirror .*sha256 ok/);
  const p = await models(['path', 'stories260k'], env);
  assert.equal(p.stdout.trim(), join(dir, 'real', 'stories260k', 'stories260K.gguf'));
  assert.equal(sha(readFileSync(p.stdout.trim())), '270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d');
  const list = await models(['list'], env);
  for (const name of ['whisper-base.en', 'parakeet-tdt-0.6b-v3', 'silero-vad-v5', 'qwen2.5-1.5b-instruct', 'voxtral-mini-3b', 'piper-en_us-lessac-medium'])
    assert.match(list.stdout, new RegExp(`^${name.replace('.', '\\.')}\\s`, 'm'));
  assert.match(list.stdout, /^stories260k\s+llm\s+1\.13 MiB\s+pulled/m);
  assert.deepEqual(readdirSync(join(dir, 'real')), ['stories260k']);
});
