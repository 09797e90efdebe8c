// A browser's own recording, uploaded: Chromium records its (fake) microphone playing a
// LibriVox clip with MediaRecorder (WebM/Opus, as every Chromium records) and posts it to
// /v1/audio/transcriptions as a web page would. libsndfile does not read WebM: this is
// FFmpeg's path, end to end.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { launchChromium } from '../lib/browser.mjs';
import { startServer, clips, wer, readWav } from '../lib/parley.mjs';

test('a WebM/Opus recording from Chromium\'s MediaRecorder is transcribed', async () => {
  const clip = clips[0];
  const { rate, pcm } = readWav(clip.wav);
  const ms = Math.round((pcm.length / 2 / rate) * 1000);
  const s = await startServer([]);
  const browser = await launchChromium(clip.wav);
  try {
    const page = await browser.newPage();
    await page.goto(s.url + '/health');
    const r = await page.evaluate(async (ms) => {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
      const rec = new MediaRecorder(stream, { mimeType: 'audio/webm;codecs=opus' });
      const parts = [];
      rec.ondataavailable = (e) => parts.push(e.data);
      const stopped = new Promise((ok) => (rec.onstop = ok));
      rec.start();
      await new Promise((ok) => setTimeout(ok, ms + 300));
      rec.stop();
      await stopped;
      stream.getTracks().forEach((t) => t.stop());
      const blob = new Blob(parts, { type: rec.mimeType });
      const head = Array.from(new Uint8Array(await blob.slice(0, 4).arrayBuffer()));
      const form = new FormData();
      form.append('file', blob, 'speech.webm');
      form.append('model', 'whisper-1');
      const res = await fetch('/v1/audio/transcriptions', { method: 'POST', body: form });
      return { status: res.status, body: await res.json(), type: rec.mimeType, head, bytes: blob.size };
    }, ms);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.match(r.type, /webm/);
    assert.deepEqual(r.head, [0x1a, 0x45, 0xdf, 0xa3], 'an EBML (WebM) header');
    const e = wer(clip.text, r.body.text);
    console.log(`WebM/Opus from Chromium, ${r.bytes} bytes: WER ${e.toFixed(2)}: ${r.body.text}`);
    assert.ok(e <= 0.5, `WER ${e}: ${r.body.text}`);
  } finally {
    await browser.close();
    await s.stop();
  }
});
