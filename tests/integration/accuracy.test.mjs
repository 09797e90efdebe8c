// Parley's transcript is never less accurate than the engine it wraps: on every recorded clip
// with a transcript here, the word error rate of `parley transcribe`, of a push-to-talk turn and
// of a hands-free turn is at most the bare engine's (`pocketsphinx single` on the same file)
// plus 0.02.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { startServer, Client, bin, librivox, readWav, streamPcm, voiceTurn, wer } from '../lib/parley.mjs';

const MARGIN = 0.02;
const clips = existsSync(librivox)
  ? readdirSync(librivox).filter((f) => f.endsWith('.wav') && existsSync(`${librivox}/${f.replace(/\.wav$/, '.txt')}`)).map((f) => ({
    name: f.replace(/^.*-(\d+)\.wav$/, '$1'),
    wav: `${librivox}/${f}`,
    text: readFileSync(`${librivox}/${f.replace(/\.wav$/, '.txt')}`, 'utf8').trim(),
  }))
  : [];

function bare(wav) {
  const r = spawnSync('pocketsphinx', ['single', wav], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout).t;
}

const rows = [];
let srv;
before(async () => {
  srv = await startServer(['--tts', 'none']);
});
after(async () => {
  await srv.stop();
  console.log('clip  bare  transcribe  push-to-talk  hands-free');
  for (const r of rows) console.log(`${r.name}  ${r.bare.toFixed(2)}  ${r.cli.toFixed(2)}        ${r.ptt.toFixed(2)}          ${r.hf.toFixed(2)}`);
});

test('there are recorded clips to measure', () => {
  assert.ok(clips.length >= 5, `pocketsphinx-testdata's LibriVox clips in ${librivox}`);
});

for (const clip of clips) {
  test(`clip ${clip.name}: Parley's WER is at most the bare engine's + ${MARGIN}`, async () => {
    const row = { name: clip.name, bare: wer(clip.text, bare(clip.wav)) };
    const cli = spawnSync(bin, ['transcribe', clip.wav], { encoding: 'utf8' });
    assert.equal(cli.status, 0, cli.stderr);
    row.cli = wer(clip.text, cli.stdout.trim());

    const c = await Client.open(srv.ws);
    await c.waitType('ready');
    const t = await voiceTurn(c, clip, { realtime: false, tts: false, reply: false });
    row.ptt = wer(clip.text, t.final.json.text);

    // Hands-free: the clip, then silence until the turn ends; every final transcript counts.
    const { rate, pcm } = readWav(clip.wav);
    const from = c.msgs.length;
    c.send({ type: 'start', sample_rate: rate, tts: false, mode: 'hands_free' });
    await streamPcm(c, Buffer.concat([pcm, Buffer.alloc(rate * 2 * 2)]), rate, { realtime: false });
    await c.waitFor((m) => m.json && m.json.type === 'transcript' && m.json.is_final, { from, timeout: 60000 });
    await new Promise((ok) => setTimeout(ok, 500));
    const finals = c.msgs.slice(from).filter((m) => m.json && m.json.type === 'transcript' && m.json.is_final);
    row.hf = wer(clip.text, finals.map((m) => m.json.text).join(' '));
    await c.close();
    rows.push(row);

    assert.ok(row.cli <= row.bare + MARGIN, `parley transcribe ${row.cli.toFixed(2)} against the bare engine's ${row.bare.toFixed(2)}`);
    assert.ok(row.ptt <= row.bare + MARGIN, `push-to-talk ${row.ptt.toFixed(2)} against ${row.bare.toFixed(2)}`);
    assert.ok(row.hf <= row.bare + MARGIN, `hands-free ${row.hf.toFixed(2)} against ${row.bare.toFixed(2)}`);
  });
}
