// Hands-free benchmark: the LibriVox clips streamed at real-time pace as one continuous
// microphone (speech, then silence), measured on this client's clock against where the speech
// really is in each clip (its first and last 10 ms frames clearly above the background):
//   - end of turn: end of speech -> speech_stopped (target: min_silence_ms + 50 ms)
//   - barge-in: speech onset of the next clip, played over the reply -> interrupted (target:
//     150 ms median)
//   - speculative start: first audio after the end-of-turn decision, with and without it.
// Prints median / p95 / max; writes bench/out/handsfree.json.
//   node bench/handsfree.mjs [--rounds N] [--parts eot,spec,barge]   (PARLEY_ARGS: server flags)
import { mkdirSync, writeFileSync } from 'node:fs';
import { startServer, Client, clips, readWav, Mic, clipBounds, median, percentile, repo } from '../tests/lib/parley.mjs';

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const rounds = arg('rounds', 1);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const audio = clips.map((c) => {
  const { pcm } = readWav(c.wav);
  return { pcm, ...clipBounds(c.wav, pcm) };
});

async function session(args) {
  const s = await startServer(['--max-tokens', '160', ...args, ...extra]);
  const c = await Client.open(s.ws);
  await c.waitType('ready');
  c.send({ type: 'start', sample_rate: 16000, mode: 'hands_free' });
  return { s, c, mic: new Mic(c) };
}

// End of turn, and first audio after the decision, for each clip (one turn per clip).
async function endOfTurn(speculative) {
  const { s, c, mic } = await session(['--speculative-silence-ms', speculative ? '200' : '0']);
  const rows = [];
  try {
    for (let r = 0; r < rounds; r++) {
      for (const a of audio) {
        const from = c.msgs.length;
        const tPlay = await mic.play(a.pcm);
        const stopped = await c.waitType('speech_stopped', { from, timeout: 30000 });
        const done = await c.waitFor((m) => m.json && ['response_done', 'interrupted'].includes(m.json.type), { from, timeout: 60000 }).catch(() => null);
        const firstAudio = c.msgs.slice(from).find((m) => m.binary);
        rows.push({
          end_of_turn_ms: stopped.t - (tPlay + a.endMs),
          first_audio_after_decision_ms: firstAudio ? firstAudio.t - stopped.t : null,
          speculative: !!(done && done.json.timings && done.json.timings.speculative),
        });
        await sleep(Math.max(0, (done && done.json.timings ? done.json.timings.audio_ms : 0)) + 300); // let it play out
      }
    }
  } finally {
    await mic.stop();
    await c.close();
    await s.stop();
  }
  return rows;
}

// Barge-in: each clip asked, then the next clip spoken over the reply's audio.
async function bargeIn() {
  const { s, c, mic } = await session([]);
  const rows = [];
  try {
    for (let r = 0; r < rounds; r++) {
      for (let i = 0; i < audio.length; i++) {
        const from = c.msgs.length;
        await mic.play(audio[i].pcm);
        const chunk = await c.waitFor((m) => m.json && m.json.type === 'text_chunk' && m.json.has_audio, { from, timeout: 60000 }).catch(() => null);
        if (!chunk) continue;
        await sleep(400);
        const next = audio[(i + 1) % audio.length];
        const at = c.msgs.length;
        const tPlay = await mic.play(next.pcm);
        const cut = await c.waitType('interrupted', { from: at, timeout: 10000 }).catch(() => null);
        rows.push({ barge_in_ms: cut ? cut.t - (tPlay + next.startMs) : null });
        // Let the new question's turn end and its reply play out before the next round.
        await c.waitFor((m) => m.json && m.json.type === 'response_done', { from: at, timeout: 60000 }).catch(() => null);
        await c.send({ type: 'interrupt' });
        await sleep(800);
      }
    }
  } finally {
    await mic.stop();
    await c.close();
    await s.stop();
  }
  return rows;
}

const parts = (process.argv.includes('--parts') ? process.argv[process.argv.indexOf('--parts') + 1] : 'eot,spec,barge').split(',');
const extra = process.env.PARLEY_ARGS ? process.env.PARLEY_ARGS.split(' ') : [];
const plain = parts.includes('eot') ? await endOfTurn(false) : [];
const spec = parts.includes('spec') ? await endOfTurn(true) : [];
const barge = parts.includes('barge') ? await bargeIn() : [];

const fmt = (x) => (Number.isFinite(x) ? x.toFixed(1).padStart(8) : '       -');
const summary = {};
const line = (name, xs) => {
  xs = xs.filter((x) => x !== null && x !== undefined);
  summary[name] = { n: xs.length, median: median(xs), p95: percentile(xs, 95), max: Math.max(...xs) };
  console.log(name.padEnd(44) + fmt(summary[name].median) + fmt(summary[name].p95) + fmt(summary[name].max) + `  (${xs.length})`);
};
console.log(`\nParley hands-free (ms, client clock), Silero VAD, min_silence 500 ms, stories260K + PocketSphinx + espeak-ng`);
console.log('stage'.padEnd(44) + '  median     p95      max');
line('end of speech -> speech_stopped', plain.map((r) => r.end_of_turn_ms));
line('decision -> first audio (no speculation)', plain.map((r) => r.first_audio_after_decision_ms));
line('decision -> first audio (speculative start)', spec.map((r) => r.first_audio_after_decision_ms));
line('speech onset -> interrupted (barge-in)', barge.map((r) => r.barge_in_ms));
console.log(`speculative replies kept: ${spec.filter((r) => r.speculative).length}/${spec.length}; barge-ins missed: ${barge.filter((r) => r.barge_in_ms === null).length}/${barge.length}`);
mkdirSync(`${repo}/bench/out`, { recursive: true });
writeFileSync(`${repo}/bench/out/handsfree.json`, JSON.stringify({ rounds, summary, plain, spec, barge }, null, 2));
