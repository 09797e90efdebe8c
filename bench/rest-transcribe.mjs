// Parley's POST /v1/audio/transcriptions against whisper-server's POST /inference (Debian's
// whisper.cpp-tools): the same Whisper model, the same clips, the same threads and decoding
// (beam search of 5, as whisper-cli), requests interleaved. Prints the time per request and
// the ratio; bench/out/rest-transcribe.json. Run inside the build environment:
//
//   scripts/run node bench/rest-transcribe.mjs [--rounds N] [--model FILE.bin]
//
// Without --model it makes a Whisper base.en-shaped model with random weights once
// (build/bench-models, as bench/engines.sh does): the speed is the real model's, the words
// are not (both servers must write the same ones).
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { startServer, clips, median, repo } from '../tests/lib/parley.mjs';

const opt = { rounds: 3, model: '', threads: 2 };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const key = argv[i].replace(/^--/, '');
  if (!(key in opt)) throw new Error(`unknown option ${argv[i]} (--rounds N, --model FILE, --threads N)`);
  opt[key] = key === 'model' ? argv[i + 1] : Number(argv[i + 1]);
}
let model = opt.model;
if (!model) {
  model = `${repo}/build/bench-models/whisper-base.en-random.bin`;
  if (!existsSync(model)) {
    mkdirSync(`${repo}/build/bench-models`, { recursive: true });
    execFileSync('python3', [`${repo}/tests/gen/make-tiny-whisper.py`, '--preset', 'base.en', model], { stdio: 'inherit' });
  }
}

const freePort = () => new Promise((ok) => {
  const s = createServer();
  s.listen(0, '127.0.0.1', () => {
    const { port } = s.address();
    s.close(() => ok(port));
  });
});

const port = await freePort();
const peer = spawn('whisper-server', ['-m', model, '--host', '127.0.0.1', '--port', String(port), '-t', String(opt.threads), '-bs', '5', '-bo', '5', '-l', 'en'], { stdio: ['ignore', 'pipe', 'pipe'] });
let peerLog = '';
peer.stdout.on('data', (d) => (peerLog += d));
peer.stderr.on('data', (d) => (peerLog += d));
const parley = await startServer(['--asr', 'whisper', '--asr-model', model, '--asr-threads', String(opt.threads), '--tts', 'none'], { withModel: false });

async function post(url, field, wav, extra) {
  const form = new FormData();
  form.append(field, new Blob([wav], { type: 'audio/wav' }), 'clip.wav');
  for (const [k, v] of Object.entries(extra)) form.append(k, v);
  const t0 = performance.now();
  const r = await fetch(url, { method: 'POST', body: form });
  const body = await r.json();
  if (!r.ok) throw new Error(`${url}: ${r.status} ${JSON.stringify(body)}`);
  return { ms: performance.now() - t0, text: String(body.text).trim() };
}

try {
  for (let i = 0; ; i++) {
    try {
      await fetch(`http://127.0.0.1:${port}/`);
      break;
    } catch {
      if (i > 300 || peer.exitCode !== null) throw new Error(`whisper-server did not start:\n${peerLog}`);
      await new Promise((ok) => setTimeout(ok, 100));
    }
  }
  const ask = {
    parley: (wav) => post(`${parley.url}/v1/audio/transcriptions`, 'file', wav, { model: 'whisper-1', response_format: 'json' }),
    peer: (wav) => post(`http://127.0.0.1:${port}/inference`, 'file', wav, { response_format: 'json', temperature: '0.0', temperature_inc: '0.2' }),
  };
  const first = readFileSync(clips[0].wav);
  await ask.parley(first); // warm-up: both load their state
  await ask.peer(first);
  const rows = [];
  for (const clip of clips) {
    const wav = readFileSync(clip.wav);
    const ms = { parley: [], peer: [] };
    let same = 0;
    for (let r = 0; r < opt.rounds; r++) {
      const order = r % 2 ? ['peer', 'parley'] : ['parley', 'peer'];
      const out = {};
      for (const who of order) {
        const res = await ask[who](wav);
        ms[who].push(res.ms);
        out[who] = res.text;
      }
      same += out.parley === out.peer;
    }
    const seconds = (wav.length - 44) / 2 / 16000;
    rows.push({ clip: clip.wav.split('-').pop(), seconds, parley_ms: median(ms.parley), peer_ms: median(ms.peer), ratio: median(ms.parley) / median(ms.peer), same_text: `${same}/${opt.rounds}` });
  }
  console.log(`\nPOST /v1/audio/transcriptions (Parley) against POST /inference (whisper-server), ${opt.rounds} rounds, ${opt.threads} threads, beam 5`);
  console.log('clip  audio s  Parley ms  whisper-server ms  ratio  same text');
  for (const r of rows) console.log(`${r.clip.padEnd(5)} ${r.seconds.toFixed(1).padStart(7)}  ${r.parley_ms.toFixed(0).padStart(9)}  ${r.peer_ms.toFixed(0).padStart(17)}  ${r.ratio.toFixed(3)}  ${r.same_text}`);
  const ratio = median(rows.map((r) => r.ratio));
  console.log(`median ratio Parley / whisper-server: ${ratio.toFixed(3)}`);
  mkdirSync(`${repo}/bench/out`, { recursive: true });
  writeFileSync(`${repo}/bench/out/rest-transcribe.json`, JSON.stringify({ model, rounds: opt.rounds, threads: opt.threads, rows, ratio }, null, 2));
} finally {
  peer.kill('SIGTERM');
  await parley.stop();
}
