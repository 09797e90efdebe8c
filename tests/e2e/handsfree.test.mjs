// Browser end-to-end test of hands-free conversation: the embedded page in headless Chromium
// against a real server, with a fake microphone file holding two LibriVox questions, 4 s of
// silence between them and a long silence after. One click turns listening on; the server's VAD
// must find both turns, the page must show both replies with the spoken word highlighted, and a
// reply cut by the second question must be marked where it was cut, with the page's playback
// report making the stored history match. A typed turn's reply cut with "Stop reply" gets the
// same checks. Screenshots: test-results/e2e-handsfree.png (a highlighted word, checked by its
// pixels) and e2e-handsfree-cut.png (the cut reply).
//
//   node --test tests/e2e/handsfree.test.mjs            (server binary: build/parley)
//   PARLEY_E2E_DEBUG=1 ...                               prints the WebSocket's messages
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { inflateSync } from 'node:zlib';
import { startServer, bin, model, repo, librivox, readWav } from '../lib/parley.mjs';
import { launchChromium } from '../lib/browser.mjs';

const RESULTS = path.join(repo, 'test-results');
const MIC_FILE = path.join(RESULTS, 'e2e-handsfree-mic.wav');
const QUESTIONS = ['0880', '0930'].map((n) => `${librivox}/sense_and_sensibility_01_austen_64kb-${n}`);
const RATE = 16000;

// The fake microphone: 1 s of silence (the capture starts before the page's `start` is sent),
// the first question, 4 s of silence, the second, then 30 s of silence so that Chromium's loop
// of the file does not come round again during the test.
function writeMicFile() {
  const silence = (s) => Buffer.alloc(Math.round(s * RATE) * 2);
  const parts = [silence(1)];
  for (const [i, q] of QUESTIONS.entries()) {
    const { rate, pcm } = readWav(`${q}.wav`);
    assert.equal(rate, RATE, `${q}.wav is not 16 kHz`);
    parts.push(pcm, silence(i === 0 ? 4 : 30));
  }
  const data = Buffer.concat(parts);
  const head = Buffer.alloc(44);
  head.write('RIFF', 0, 'ascii');
  head.writeUInt32LE(36 + data.length, 4);
  head.write('WAVEfmt ', 8, 'ascii');
  head.writeUInt32LE(16, 16);
  head.writeUInt16LE(1, 20); // PCM
  head.writeUInt16LE(1, 22); // mono
  head.writeUInt32LE(RATE, 24);
  head.writeUInt32LE(RATE * 2, 28);
  head.writeUInt16LE(2, 32);
  head.writeUInt16LE(16, 34);
  head.write('data', 36, 'ascii');
  head.writeUInt32LE(data.length, 40);
  writeFileSync(MIC_FILE, Buffer.concat([head, data]));
}

// The highlight's background (style.css `.w.now`).
const HIGHLIGHT = [0xff, 0xe0, 0x8a];

// How many pixels of a screenshot (8-bit RGB or RGBA PNG, not interlaced) have that colour.
function countColour(png, [r, g, b]) {
  assert.equal(png.toString('latin1', 1, 4), 'PNG');
  let width = 0, height = 0, channels = 0;
  const idat = [];
  for (let off = 8; off < png.length;) {
    const len = png.readUInt32BE(off);
    const type = png.toString('latin1', off + 4, off + 8);
    const body = png.subarray(off + 8, off + 8 + len);
    if (type === 'IHDR') {
      width = body.readUInt32BE(0);
      height = body.readUInt32BE(4);
      assert.equal(body[8], 8, 'bit depth');
      assert.equal(body[12], 0, 'interlaced');
      channels = { 2: 3, 6: 4 }[body[9]];
      assert.ok(channels, `colour type ${body[9]}`);
    }
    if (type === 'IDAT') idat.push(body);
    off += 12 + len;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  let prev = Buffer.alloc(stride);
  let n = 0;
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const line = Buffer.from(raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1)));
    for (let i = 0; i < stride; i++) {
      const a = i >= channels ? line[i - channels] : 0;
      const c = i >= channels ? prev[i - channels] : 0;
      const up = prev[i];
      let add = 0;
      if (filter === 1) add = a;
      else if (filter === 2) add = up;
      else if (filter === 3) add = (a + up) >> 1;
      else if (filter === 4) {
        const p = a + up - c, pa = Math.abs(p - a), pb = Math.abs(p - up), pc = Math.abs(p - c);
        add = pa <= pb && pa <= pc ? a : pb <= pc ? up : c;
      }
      line[i] = (line[i] + add) & 0xff;
    }
    for (let x = 0; x < stride; x += channels) if (line[x] === r && line[x + 1] === g && line[x + 2] === b) n++;
    prev = line;
  }
  return n;
}

const words = (s) => s.toLowerCase().match(/[a-z']+/g) || [];

describe('hands-free in Chromium', { timeout: 180_000 }, () => {
  let server, browser;

  before(async () => {
    assert.ok(existsSync(bin), `no server binary at ${bin} (build it, or set PARLEY_BIN)`);
    assert.ok(existsSync(model), `no model at ${model}`);
    mkdirSync(RESULTS, { recursive: true });
    writeMicFile();
    // A long reply, so that the second question comes while the first reply is still spoken.
    server = await startServer(['--max-tokens', '200']);
    browser = await launchChromium(MIC_FILE);
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  // A page with its uncaught errors and every JSON message both ways, as its WebSocket saw them.
  async function withPage(fn) {
    const context = await browser.newContext({ permissions: ['microphone'], viewport: { width: 1100, height: 900 } });
    const page = await context.newPage();
    const p = { page, errors: [], got: [], sent: [] };
    page.on('pageerror', (e) => p.errors.push(e.message));
    page.on('console', (m) => { if (m.type() === 'error') p.errors.push(m.text()); });
    page.on('websocket', (sock) => {
      const keep = (list) => (f) => { if (typeof f.payload === 'string') list.push({ ...JSON.parse(f.payload), t: performance.now() }); };
      sock.on('framereceived', keep(p.got));
      sock.on('framesent', keep(p.sent));
    });
    try {
      await page.goto(server.url);
      await page.waitForFunction(() => window.parley && window.parley.state === 'ready', null, { timeout: 15_000 });
      await fn(p);
      assert.deepEqual(p.errors, []);
    } finally {
      if (process.env.PARLEY_E2E_DEBUG) dump(p.got, p.sent);
      await context.close();
    }
  }

  // A cut reply: the page reported where its playback stopped (after `interrupted`), strikes
  // through the rest, and the stored history keeps exactly the words shown as heard.
  async function checkCut({ page, got, sent }, turn, screenshot) {
    const cut = got.find((m) => m.type === 'interrupted' && m.turn_id === turn);
    assert.ok(cut, `turn ${turn} was not interrupted`);
    assert.ok(sent.some((m) => m.type === 'playback' && m.turn_id === turn && m.t >= cut.t), 'no playback report after interrupted');
    const reply = page.locator(`#log .msg.assistant[data-turn="${turn}"]`);
    await reply.locator('.badge.interrupted').waitFor({ timeout: 5_000 });
    const text = await reply.locator('.text').textContent();
    assert.ok(await reply.locator('.unheard').count() > 0, `nothing struck through in "${text}"`);
    const shown = (await reply.locator('.w:not(.unheard)').allTextContents()).join(' ');
    const id = await page.evaluate(() => window.parley.sessionId);
    const token = await page.evaluate(() => localStorage.getItem('parley.resume_token'));
    // (Contractions compared by their first part: espeak-ng's word events cut "I'm" to "I".)
    const same = (x) => words(x).map((w) => w.replace(/'.*$/, '')).join(' ');
    // The page's playback report reaches the server and amends the history (up to 5 s).
    let stored;
    for (let i = 0; i < 50; i++) {
      const hist = await (await fetch(`${server.url}/sessions/${id}`, { headers: { Authorization: `Bearer ${token}` } })).json();
      stored = hist.turns.find((t) => t.turn_id === turn);
      if (stored && same(stored.assistant) === same(shown)) break;
      await page.waitForTimeout(100);
    }
    assert.equal(stored.interrupted, true);
    assert.equal(same(stored.assistant), same(shown), 'history and page disagree on what was heard');
    console.log(`# turn ${turn} cut after "${shown.slice(-40)}"; stored: "${stored.assistant.slice(-40)}"`);
    if (screenshot) {
      await reply.scrollIntoViewIfNeeded();
      await page.screenshot({ path: path.join(RESULTS, screenshot) });
    }
  }

  test('two turns hands-free, the spoken word highlighted, a barged-in reply marked where it was cut', { timeout: 150_000 }, async () => {
    await withPage(handsFree);
  });

  test('Stop reply silences the reply at once and keeps what was heard', { timeout: 60_000 }, async () => {
    await withPage(async (p) => {
      const { page, got } = p;
      await page.getByLabel('Message').fill('Tell me a long story about a dog.');
      await page.getByLabel('Message').press('Enter');
      await page.waitForFunction(() => window.parley.state === 'speaking' && window.parley.highlighted !== '', null, { timeout: 30_000 });
      await page.waitForTimeout(1500);
      await page.getByRole('button', { name: 'Stop reply' }).click();
      // The audio stops at once, before the server answers.
      assert.notEqual(await page.evaluate(() => window.parley.state), 'speaking');
      const turn = got.find((m) => m.type === 'text_chunk').turn_id;
      await page.waitForFunction(() => window.parley.interruptions > 0, null, { timeout: 5_000 });
      await checkCut(p, turn, null);
      assert.equal(await page.evaluate(() => window.parley.highlighted), '');
    });
  });

  async function handsFree(p) {
    const { page, got, sent } = p;
    assert.equal(await page.evaluate(() => window.parley.mode), 'hands_free', 'hands-free is the default');
    assert.ok(await page.getByLabel('Hands-free').isChecked());

    await page.getByRole('button', { name: 'Start listening' }).click();
    await page.waitForFunction(() => window.parley.state === 'listening' || window.parley.state === 'hearing', null, { timeout: 10_000 });
    await page.getByRole('button', { name: 'Stop listening' }).waitFor({ timeout: 5_000 });
    // The frame listener may see the start message a moment after the page's state changes.
    for (let i = 0; i < 100 && !sent.some((m) => m.type === 'start' && m.mode); i++) await new Promise((r) => setTimeout(r, 50));
    const start = sent.find((m) => m.type === 'start' && m.mode);
    assert.ok(start, 'the page sent start');
    assert.equal(start.mode, 'hands_free');
    assert.equal(start.echo_cancellation, true, 'the browser cancels the echo and says so');

    // A reply speaks: wait for a highlighted word and catch it in a screenshot, checked by its
    // pixels (a word lasts a few hundred ms, a screenshot about as long on a busy machine).
    let shot = null;
    for (let i = 0; i < 20 && !shot; i++) {
      await page.waitForFunction(() => window.parley.highlighted !== '', null, { timeout: 30_000 });
      const word = await page.evaluate(() => window.parley.highlighted);
      const png = await page.screenshot();
      const pixels = countColour(png, HIGHLIGHT);
      if (pixels >= 100) shot = { word, pixels, png };
    }
    assert.ok(shot, 'no screenshot shows a highlighted word');
    writeFileSync(path.join(RESULTS, 'e2e-handsfree.png'), shot.png);
    console.log(`# highlighted "${shot.word}" (${shot.pixels} px of its colour) in test-results/e2e-handsfree.png`);

    // Both questions become turns without any click.
    await page.waitForFunction(() => window.parley.finals >= 2 && window.parley.replies >= 2, null, { timeout: 45_000 });
    await page.waitForFunction(() => window.parley.responses >= 1, null, { timeout: 30_000 });
    const state = await page.evaluate(() => ({ ...window.parley }));
    const types = (t) => got.filter((m) => m.type === t);
    assert.ok(types('speech_started').length >= 2 && types('speech_stopped').length >= 2,
      `speech events: ${types('speech_started').length} started, ${types('speech_stopped').length} stopped`);
    const finals = types('transcript').filter((m) => m.is_final && m.text);
    assert.equal(finals.length, 2, JSON.stringify(finals));
    for (const [i, q] of QUESTIONS.entries()) {
      const reference = new Set(words(readFileSync(`${q}.txt`, 'utf8')));
      const matched = [...new Set(words(finals[i].text))].filter((w) => reference.has(w));
      assert.ok(matched.length >= 2, `question ${i + 1}: "${finals[i].text}" has ${matched.length} words of the reference`);
    }
    const userTexts = await page.locator('#log .msg.user .text').allTextContents();
    assert.deepEqual(userTexts, finals.map((m) => m.text));
    const chunks = types('text_chunk');
    const turns = [...new Set(chunks.map((c) => c.turn_id))];
    assert.equal(turns.length, 2, `replies to ${turns.length} turns`);
    assert.ok(chunks.some((c) => c.has_audio && Array.isArray(c.words) && c.words.length), 'no chunk with word timings');
    assert.ok(state.wordChunks > 0 && state.highlights > 0, JSON.stringify(state));

    // Every playback report names its turn.
    const reports = sent.filter((m) => m.type === 'playback');
    assert.ok(reports.length > 0, 'no playback reports');
    for (const r of reports) assert.ok(turns.includes(r.turn_id) && typeof r.chunk_id === 'string' && r.played_ms >= 0, JSON.stringify(r));

    // The second question came while the first reply was spoken: the server cut it, the page
    // stopped its audio, reported where, and shows the unheard rest struck through.
    const cut = types('interrupted');
    console.log(`# heard: ${finals.map((m) => `"${m.text}"`).join(', ')}; interrupted: ${JSON.stringify(cut)}; ` +
      `highlights: ${state.highlights}; reports: ${reports.length}`);
    if (cut.length) {
      assert.equal(cut[0].turn_id, turns[0]);
      await checkCut(p, turns[0], 'e2e-handsfree-cut.png');
    } else {
      console.log('# the first reply ended before the second question: no barge-in to check');
    }
  }
});

// PARLEY_E2E_DEBUG=1: the WebSocket's JSON messages in order (partial transcripts left out).
function dump(got, sent) {
  const t0 = sent.length ? sent[0].t : 0;
  const line = (dir, m) => `${(m.t - t0).toFixed(0).padStart(6)} ${dir} ${JSON.stringify({ ...m, t: undefined, words: m.words?.length })}`;
  const all = [...got.filter((m) => m.type !== 'transcript' || m.is_final).map((m) => [m.t, line('<', m)]),
    ...sent.map((m) => [m.t, line('>', m)])];
  console.log(all.sort((a, b) => a[0] - b[0]).map((x) => x[1]).join('\n'));
}
