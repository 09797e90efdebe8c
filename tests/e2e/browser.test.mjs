// Browser end-to-end test: the embedded page in headless Chromium against a real server.
//
// Chromium's fake microphone plays a LibriVox clip; the test picks push-to-talk, holds it for the
// clip's length and checks the page shows the transcript, streams the reply and schedules its audio.
// A typed turn, then a reload (session resume from localStorage + GET /sessions/{id}) follow.
//
//   node --test tests/e2e/                              (server binary: build/parley)
//   env PARLEY_BIN=build-web/parley node --test tests/e2e/
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium } from '../lib/browser.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = path.resolve(ROOT, process.env.PARLEY_BIN || 'build/parley');
const MODEL = process.env.PARLEY_TEST_MODEL || path.resolve(ROOT, '../shared/models/stories260K.gguf');
const CLIP = '/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870';
const RESULTS = path.join(ROOT, 'test-results');

// Duration of a PCM WAV file, from its fmt and data chunks.
function wavDurationMs(file) {
  const b = readFileSync(file);
  assert.equal(b.toString('ascii', 0, 4), 'RIFF', `${file} is not a WAV file`);
  let byteRate = 0;
  for (let off = 12; off + 8 <= b.length;) {
    const id = b.toString('ascii', off, off + 4);
    const size = b.readUInt32LE(off + 4);
    if (id === 'fmt ') byteRate = b.readUInt32LE(off + 16);
    if (id === 'data') return Math.round((Math.min(size, b.length - off - 8) / byteRate) * 1000);
    off += 8 + size + (size & 1);
  }
  throw new Error(`${file} has no data chunk`);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function waitForHealth(base, proc, log, ms) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`server exited with ${proc.exitCode}:\n${log()}`);
    try {
      const res = await fetch(`${base}/health`);
      if (res.ok) return res.json();
    } catch { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`server did not answer /health within ${ms} ms:\n${log()}`);
}

// Starts `parley serve` on a free port; resolves once /health answers.
async function startServer(args) {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const proc = spawn(BIN, ['serve', '--port', String(port), ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const keep = (d) => { log = (log + d).slice(-20000); };
  proc.stdout.on('data', keep);
  proc.stderr.on('data', keep);
  const stop = async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  };
  try {
    const health = await waitForHealth(base, proc, () => log, 30_000);
    return { base, health, stop, log: () => log };
  } catch (e) {
    await stop();
    throw e;
  }
}

const words = (s) => s.toLowerCase().match(/[a-z']+/g) || [];

describe('web page in Chromium', { timeout: 240_000 }, () => {
  let tmp, server, browser, base;
  const clipMs = wavDurationMs(`${CLIP}.wav`);

  before(async () => {
    assert.ok(existsSync(BIN), `no server binary at ${BIN} (build it, or set PARLEY_BIN)`);
    assert.ok(existsSync(MODEL), `no model at ${MODEL}`);
    tmp = mkdtempSync(path.join(os.tmpdir(), 'parley-e2e-'));
    mkdirSync(RESULTS, { recursive: true });
    server = await startServer(['--model', MODEL, '--db', path.join(tmp, 'e2e.db')]);
    base = server.base;
    assert.ok(server.health.llm, `server has no language model: ${JSON.stringify(server.health)}`);

    // Chromium's fake capture reads the 16 kHz mono WAV as is (it resamples itself) and loops it.
    browser = await launchChromium(`${CLIP}.wav`);
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  // A page whose uncaught errors fail the test.
  async function openPage(url = base) {
    const context = await browser.newContext({ permissions: ['microphone'] });
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    page.on('response', (r) => { if (r.status() >= 400) errors.push(`HTTP ${r.status()} for ${r.url()}`); });
    await page.goto(url);
    await page.waitForFunction(() => window.parley && window.parley.state === 'ready', null, { timeout: 15_000 });
    return { page, errors };
  }

  const replyText = (page) => page.waitForFunction(
    () => [...document.querySelectorAll('#log .msg.assistant .text')].map((e) => e.textContent.trim()).join(' '),
    null, { timeout: 30_000 }).then((h) => h.jsonValue());

  test('push-to-talk: transcript, streamed reply and its audio', { timeout: 60_000 }, async () => {
    const { page, errors } = await openPage();
    await page.getByLabel('Push to talk').check(); // hands-free is the default
    const talk = page.getByRole('button', { name: /hold to talk/i });
    const box = await talk.boundingBox();
    await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    await page.mouse.down();
    await page.waitForFunction(() => window.parley.state === 'recording', null, { timeout: 10_000 });
    await page.waitForTimeout(clipMs + 500);
    await page.mouse.up();

    const user = page.locator('#log .msg.user .text').first();
    await user.waitFor({ timeout: 20_000 });
    const heard = await user.textContent();
    const reference = new Set(words(readFileSync(`${CLIP}.txt`, 'utf8')));
    const matched = [...new Set(words(heard))].filter((w) => reference.has(w));
    assert.ok(matched.length >= 3, `transcript "${heard}" has only ${matched.length} words of the reference`);

    const reply = await replyText(page);
    assert.ok(reply.length > 0, 'no reply text rendered');
    await page.waitForFunction(() => window.parley.samplesPlayed > 0, null, { timeout: 30_000 });
    // response_done: the latency line under the reply.
    await page.locator('#log .msg.assistant .latency').first().waitFor({ timeout: 30_000 });
    // It leads with what the user waited: the release to the first sound.
    const latency = await page.locator('#log .msg.assistant .latency').first().textContent();
    assert.match(latency, /^reply heard \d+ ms after you stopped/);
    // ...and the turn's waterfall: one bar per stage the server timed.
    const bars = await page.locator('#log .msg.assistant .waterfall .wf-row').count();
    assert.ok(bars >= 4, `waterfall rows: ${bars}`);
    const state = await page.evaluate(() => ({ ...window.parley }));
    console.log(`# heard: "${heard}"; reply: "${reply.slice(0, 60)}…"; samples scheduled: ${state.samplesPlayed}; ` +
      `timings: ${JSON.stringify(state.lastTimings)}`);
    assert.ok(state.chunks > 0 && state.audioChunks > 0, JSON.stringify(state));
    assert.equal(typeof state.lastTimings?.first_text_ms, 'number', JSON.stringify(state.lastTimings));

    assert.equal(await page.locator('#log .badge.text-only').count(), 0, 'a chunk came without audio');
    await page.screenshot({ path: path.join(RESULTS, 'e2e-page.png') });

    // The reply's audio lasts seconds: "Stop reply" must silence it.
    if (await page.evaluate(() => window.parley.state === 'speaking')) {
      await page.getByRole('button', { name: 'Stop reply' }).click();
      await page.waitForFunction(() => window.parley.state === 'ready', null, { timeout: 5_000 });
    }
    assert.deepEqual(errors, []);
    await page.context().close();
  });

  test('typed turn gets a reply, and a reload shows the conversation again', { timeout: 60_000 }, async () => {
    const { page, errors } = await openPage();
    await page.getByLabel('Message').fill('Tell me a story about a cat.');
    await page.getByLabel('Message').press('Enter');
    await page.locator('#log .msg.user .text', { hasText: 'story about a cat' }).waitFor({ timeout: 5_000 });
    const reply = await replyText(page);
    assert.ok(reply.length > 0, 'no reply text rendered');
    await page.locator('#log .msg.assistant .latency').first().waitFor({ timeout: 30_000 });
    // Typed turns are spoken too, and the session set-up behind them leaves no trace in the log.
    await page.waitForFunction(() => window.parley.samplesPlayed > 0, null, { timeout: 30_000 });
    assert.equal(await page.locator('#log .badge.text-only').count(), 0, 'a chunk came without audio');
    assert.equal(await page.locator('#log .msg.system').count(), 0);
    const sessionId = await page.evaluate(() => window.parley.sessionId);

    await page.reload();
    await page.waitForFunction(() => window.parley && window.parley.state === 'ready', null, { timeout: 15_000 });
    assert.equal(await page.evaluate(() => window.parley.sessionId), sessionId, 'session not resumed');
    await page.locator('#log .msg.user .text', { hasText: 'story about a cat' }).waitFor({ timeout: 10_000 });
    const restored = await page.locator('#log .msg.assistant .text').first().textContent();
    assert.ok(restored.trim().length > 0, 'reply not restored from history');
    assert.deepEqual(errors, []);
    await page.context().close();
  });

  test('without a model the page says how to load one', { timeout: 60_000 }, async () => {
    const bare = await startServer(['--db', path.join(tmp, 'bare.db')]);
    try {
      const { page, errors } = await openPage(bare.base);
      await page.getByText('No language model loaded').waitFor({ timeout: 5_000 });
      assert.match(await page.locator('#notices').textContent(), /make serve MODEL=path\/to\/model\.gguf/);
      // A typed message is answered with a visible error, not silence.
      await page.getByLabel('Message').fill('hello');
      await page.getByLabel('Message').press('Enter');
      await page.locator('#errors .error', { hasText: 'no_model' }).waitFor({ timeout: 10_000 });
      await page.waitForFunction(() => window.parley.state === 'ready', null, { timeout: 5_000 });
      assert.deepEqual(errors, []);
      await page.context().close();
    } finally {
      await bare.stop();
    }
  });
});
