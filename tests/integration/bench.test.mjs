// `parley bench`: the C++ WebSocket benchmark client against a server it spawns itself. Short
// runs: push-to-talk as fast as possible, hands-free at real-time pace, bad options, a server
// that does not start.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { bin, model, repo, tempDir } from '../lib/parley.mjs';

function bench(args, timeout = 90000) {
  const r = spawnSync(bin, ['bench', ...args], { cwd: repo, encoding: 'utf8', timeout });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

const count = (s, what) => s.split(what).length - 1;
const STAGES = ['transcript', 'first_token', 'first_text', 'first_audio', 'done'];

test('push-to-talk, as fast as possible, new session after 2 turns: every stage timed, JSON, a waterfall row per turn', () => {
  const dir = tempDir();
  const out = join(dir, 'voice.json'), html = join(dir, 'voice.html');
  const r = bench(['--clients', '1', '--turns', '2', '--warmup', '1', '--pace', '0', '--mode', 'push_to_talk', '--no-bare',
    '--turns-per-session', '2', '--out', out, '--html', html, '--', '--model', model]);
  assert.equal(r.code, 0, r.out + r.err);
  // What the user waits leads (push-to-talk: from the release), then the breakdown.
  assert.match(r.out, /\n== 1 client.*\nrelease → first audio: median [\d.]+ ms, p95 [\d.]+ ms \(what the user waits\)\n/);
  assert.match(r.out, /decision → first audio: median [\d.]+, p95 [\d.]+\n/);
  assert.match(r.out, /pauses inside the speech: the longest \d+ ms/);
  assert.match(r.out, /Parley's own overhead: median -?[\d.]+ ms/);
  assert.match(r.out, /server: CPU [\d.]+ s per turn, [\d.]+ cores .*peak RSS [\d.]+ MiB/);
  const j = JSON.parse(readFileSync(out, 'utf8'));
  assert.equal(j.runs.length, 1);
  const run = j.runs[0];
  assert.equal(run.clients, 1);
  assert.equal(run.turns.length, 3);
  for (const s of STAGES) {
    const st = run.summary.stages_ms[s];
    assert.equal(st.n, 2, s);
    for (const k of ['median', 'p95', 'max']) assert.equal(typeof st[k], 'number', `${s}.${k}`);
  }
  for (const t of run.turns) {
    assert.ok(t.ok, t.error);
    for (const s of STAGES) assert.ok(t.from_decision_ms[s] >= 0, `${s} of turn ${t.index}: ${t.from_decision_ms[s]}`);
    assert.ok(t.from_decision_ms.end_of_speech < 0, 'the end of speech comes before stop');
    assert.ok(t.timings && typeof t.timings.asr_ms === 'number' && typeof t.timings.llm_prompt_ms === 'number');
    assert.ok(t.transcript.length > 0 && t.wer <= 0.6, `${t.transcript} (WER ${t.wer})`);
    assert.ok(t.events.some((e) => e.sent === 'stop') && t.events.some((e) => e.type === 'response_done'));
    assert.ok(t.server_rss_kb > 0 && t.server_cpu_s > 0);
  }
  assert.deepEqual(run.turns.map((t) => t.warmup), [true, false, false]);
  assert.deepEqual(run.turns.map((t) => t.session), [0, 0, 1], 'a new session after 2 turns');
  assert.ok(run.summary.server_vmhwm_kb > 0);
  const page = readFileSync(html, 'utf8');
  assert.equal(count(page, 'class="wf-row"'), run.turns.length);
  assert.ok(page.includes('<svg') && !page.includes('<script') && !page.includes('<link'));
});

test('--protocol realtime: the same clients over the native protocol, then over /v1/realtime, compared', () => {
  const dir = tempDir();
  const out = join(dir, 'voice.json');
  const r = bench(['--clients', '1', '--turns', '2', '--warmup', '0', '--protocol', 'realtime', '--no-bare',
    '--out', out, '--html', join(dir, 'voice.html'), '--', '--model', model], 180000);
  assert.equal(r.code, 0, r.out + r.err);
  assert.match(r.out, /\n== 1 client over the OpenAI Realtime API: 2 turns/);
  const m = /end of speech -> first audio, Realtime API \/ native protocol = ([\d.]+) \(median ([\d.]+) \/ ([\d.]+) ms/.exec(r.out);
  assert.ok(m, r.out);
  assert.ok(Math.abs(Number(m[1]) - Number(m[2]) / Number(m[3])) < 0.01, m[0]);
  const j = JSON.parse(readFileSync(out, 'utf8'));
  assert.deepEqual(j.runs.map((run) => run.protocol), ['native', 'realtime']);
  const rt = j.runs[1];
  for (const t of rt.turns) {
    assert.ok(t.ok, t.error);
    assert.ok(t.transcript.length > 0 && t.wer <= 0.6, `${t.transcript} (WER ${t.wer})`);
    assert.ok(t.from_decision_ms.first_audio > 0 && t.reply.length > 0);
  }
  assert.equal(typeof j.realtime_to_native_median['1'], 'number');
});

test('hands-free at real-time pace: the server VAD decides each turn end after the speech', () => {
  const dir = tempDir();
  const out = join(dir, 'voice.json');
  const r = bench(['--clients', '1', '--turns', '2', '--warmup', '0', '--no-bare', '--out', out,
    '--html', join(dir, 'voice.html'), '--', '--model', model]);
  assert.equal(r.code, 0, r.out + r.err);
  const turns = JSON.parse(readFileSync(out, 'utf8')).runs[0].turns;
  assert.equal(turns.length, 2);
  for (const t of turns) {
    assert.ok(t.ok, t.error);
    // min_silence_ms is 500: the decision comes that long after the aligned end of speech.
    const eot = -t.from_decision_ms.end_of_speech;
    assert.ok(eot > 300 && eot < 1500, `end of speech → decision ${eot} ms`);
    assert.ok(t.events.some((e) => e.type === 'speech_stopped'));
    assert.ok(t.from_decision_ms.first_audio >= 0);
  }
});

test('bad options and missing clips exit 2; --help exits 0', () => {
  for (const args of [['--bogus'], ['--mode', 'sideways'], ['--clients', '0'], ['--pace', 'fast'], ['--turns']]) {
    const r = bench(args);
    assert.equal(r.code, 2, args.join(' '));
    assert.match(r.err, /usage: parley bench/);
  }
  const missing = bench(['--audio-dir', '/nonexistent']);
  assert.equal(missing.code, 2);
  assert.match(missing.err, /missing clip file \/nonexistent\/sense_and_sensibility/);
  const help = bench(['--help']);
  assert.equal(help.code, 0);
  assert.match(help.out, /--turns-per-session/);
});

test('a server that does not start: its log tail and exit 1', () => {
  const dir = tempDir();
  const r = bench(['--clients', '1', '--no-bare', '--out', join(dir, 'v.json'), '--html', join(dir, 'v.html'),
    '--', '--model', join(dir, 'missing.gguf')]);
  assert.equal(r.code, 1, r.out + r.err);
  assert.match(r.err, /the server did not start/);
  assert.match(r.err, /missing\.gguf/);
  assert.ok(!existsSync(join(dir, 'v.json')));
});
