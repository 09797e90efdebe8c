// Latency benchmark: real recorded speech (the LibriVox clips) streamed at real-time pace to a
// real `parley serve`, push-to-talk turns, timings of every stage after `stop`, measured by the
// server on one monotonic clock (response_done.timings) and by this client on its own clock.
// Prints median / p95 / max; writes bench/out/latency.json.
//   node bench/latency.mjs [--rounds N] [--clients N]
import { mkdirSync, writeFileSync } from 'node:fs';
import { startServer, Client, clips, voiceTurn, wer, median, percentile, repo } from '../tests/lib/parley.mjs';

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const rounds = arg('rounds', 2);
const nclients = arg('clients', 1);

const srv = await startServer(process.env.PARLEY_ARGS ? process.env.PARLEY_ARGS.split(' ') : []);
const stages = ['transcript_ms', 'llm_queue_ms', 'llm_prompt_ms', 'first_token_ms', 'first_text_ms', 'first_audio_ms', 'total_ms'];
const rows = [];
try {
  const clients = await Promise.all(Array.from({ length: nclients }, () => Client.open(srv.ws)));
  await Promise.all(clients.map((c) => c.waitType('ready')));
  // One warm-up turn per client (engines load lazily), not counted.
  await Promise.all(clients.map((c) => voiceTurn(c, clips[4])));
  for (let r = 0; r < rounds; r++) {
    for (const clip of clips) {
      const turns = await Promise.all(clients.map((c) => voiceTurn(c, clip)));
      for (const t of turns) {
        if (!t.done || t.done.json.type !== 'response_done') continue;
        const firstText = t.msgs.find((m) => m.json && m.json.type === 'text_chunk');
        const firstAudio = t.msgs.find((m) => m.binary);
        rows.push({
          clip: clip.wav.split('-').at(-1),
          wer: wer(clip.text, t.final.json.text),
          ...Object.fromEntries(stages.map((s) => [s, t.done.json.timings[s]])),
          first_chunk: firstText ? firstText.json.text : null,
          prompt_tokens: t.done.json.timings.prompt_tokens,
          cached_tokens: t.done.json.timings.cached_tokens,
          client_first_text_ms: firstText ? firstText.t - t.tStop : null,
          client_first_audio_ms: firstAudio ? firstAudio.t - t.tStop : null,
        });
      }
    }
  }
  await Promise.all(clients.map((c) => c.close()));
} finally {
  await srv.stop();
}

const cols = [...stages, 'client_first_text_ms', 'client_first_audio_ms'];
const fmt = (x) => (Number.isFinite(x) ? x.toFixed(1).padStart(8) : '       -');
console.log(`\nParley latency after stop (ms), ${rows.length} turns, ${nclients} client(s), stories260K + PocketSphinx + espeak-ng`);
console.log('stage'.padEnd(24) + '  median     p95      max');
const summary = {};
for (const c of cols) {
  const xs = rows.map((r) => r[c]).filter((x) => x !== null && x !== undefined);
  summary[c] = { median: median(xs), p95: percentile(xs, 95), max: Math.max(...xs) };
  console.log(c.padEnd(24) + fmt(summary[c].median) + fmt(summary[c].p95) + fmt(summary[c].max));
}
const meanWer = rows.reduce((a, r) => a + r.wer, 0) / Math.max(1, rows.length);
console.log(`mean WER over the clips: ${meanWer.toFixed(2)}`);
mkdirSync(`${repo}/bench/out`, { recursive: true });
writeFileSync(`${repo}/bench/out/latency.json`, JSON.stringify({ clients: nclients, rounds, summary, rows }, null, 2));
