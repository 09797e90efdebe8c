// Hands-free conversation against a real server: the Silero VAD finds each turn in a continuous
// microphone stream (LibriVox speech and silence at real-time pace), a second question barges
// in on the reply, a click does not, and the history keeps only what was heard.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, Client, clips, readWav, Mic, speechBounds } from '../lib/parley.mjs';

const RATE = 16000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function clip(i) {
  const { rate, pcm } = readWav(clips[i].wav);
  assert.equal(rate, RATE);
  return { pcm, ...speechBounds(pcm) };
}

async function handsFree(args = [], start = {}) {
  const s = await startServer(['--max-tokens', '160', ...args]);
  const c = await Client.open(s.ws);
  const ready = await c.waitType('ready');
  c.send({ type: 'start', sample_rate: RATE, mode: 'hands_free', ...start });
  const mic = new Mic(c);
  return { s, c, mic, id: ready.json.session_id };
}

test('hands-free: a turn ends within the configured silence plus 150 ms, and gets a reply', async () => {
  const { s, c, mic } = await handsFree(['--speculative-silence-ms', '0']);
  try {
    const q = clip(0);
    const tPlay = await mic.play(q.pcm);
    const started = await c.waitType('speech_started', { timeout: 20000 });
    const stopped = await c.waitType('speech_stopped', { timeout: 20000 });
    const tEnd = tPlay + q.endMs;
    const delay = stopped.t - tEnd;
    console.log(`end of turn: ${delay.toFixed(0)} ms after the end of speech (silence 500 ms)`);
    assert.ok(delay <= 500 + 150, `speech_stopped ${delay.toFixed(0)} ms after the speech ended`);
    assert.ok(delay >= 300, `not before the silence was heard (${delay.toFixed(0)} ms)`);
    // The events' stream times: the utterance lasts about as long as the clip's speech.
    const spoken = stopped.json.at_ms - started.json.at_ms;
    assert.ok(Math.abs(spoken - (q.endMs - q.startMs)) < 400, `speech ${spoken} ms in the stream, ${q.endMs - q.startMs} ms in the clip`);
    const final = await c.waitFor((m) => m.json && m.json.type === 'transcript' && m.json.is_final);
    assert.ok(final.json.text.length > 0, 'words were recognised');
    const done = await c.waitType('response_done', { timeout: 30000 });
    assert.ok(done.json.timings.speech_end_ms < 0, 'the true end of speech is in the timings');
  } finally {
    await mic.stop();
    await c.close();
    await s.stop();
  }
});

test('hands-free: speech during the reply interrupts it, the history keeps what was heard', async () => {
  const { s, c, mic, id } = await handsFree();
  try {
    await mic.play(clip(0).pcm);
    const first = await c.waitFor((m) => m.json && m.json.type === 'text_chunk' && m.json.has_audio, { timeout: 30000 });
    const turn = first.json.turn_id;
    await sleep(500); // the reply is playing
    const q2 = clip(1);
    const tPlay = await mic.play(q2.pcm);
    const onset = tPlay + q2.startMs;
    const cut = await c.waitType('interrupted', { timeout: 10000 });
    const latency = cut.t - onset;
    console.log(`barge-in: interrupted ${latency.toFixed(0)} ms after the speech onset`);
    assert.equal(cut.json.turn_id, turn);
    assert.ok(latency <= 300, `interrupted ${latency.toFixed(0)} ms after the onset`);
    // Nothing of the old turn after `interrupted`: the next audio belongs to a new turn's chunk.
    const at = c.msgs.indexOf(cut);
    const done = await c.waitFor((m) => m.json && m.json.type === 'response_done' && m.json.turn_id > turn, { from: at, timeout: 60000 });
    let lastChunkTurn = null;
    for (const m of c.msgs.slice(at + 1)) {
      if (m.json && m.json.type === 'text_chunk') lastChunkTurn = m.json.turn_id;
      if (m.json && m.json.type === 'text_chunk') assert.notEqual(m.json.turn_id, turn);
      if (m.binary) assert.ok(lastChunkTurn !== null && lastChunkTurn !== turn, 'audio of the old turn after interrupted');
    }
    assert.ok(done.json.text.length > 0, 'the new question got a reply');
    // The history: the first reply cut to the words heard, marked interrupted.
    const sent = c.ofType('text_chunk').filter((x) => x.turn_id === turn).map((x) => x.text).join(' ');
    const hist = await (await fetch(`${s.url}/sessions/${id}`)).json();
    const t1 = hist.turns.find((t) => t.turn_id === turn);
    assert.equal(t1.interrupted, true);
    assert.equal(t1.assistant, cut.json.heard || '');
    assert.ok(t1.assistant.length < sent.length, 'shorter than what was sent');
    assert.ok(sent.startsWith(t1.assistant.split(' ')[0] || ''), 'a prefix of the reply');
  } finally {
    await mic.stop();
    await c.close();
    await s.stop();
  }
});

test('hands-free: a 100 ms click during the reply does not interrupt it', async () => {
  const { s, c, mic } = await handsFree();
  try {
    await mic.play(clip(2).pcm);
    await c.waitFor((m) => m.json && m.json.type === 'text_chunk' && m.json.has_audio, { timeout: 30000 });
    await sleep(300);
    // A loud 100 ms click: a decaying burst of noise.
    const click = Buffer.alloc((RATE / 10) * 2);
    for (let i = 0; i < RATE / 10; i++) click.writeInt16LE(Math.round((Math.random() * 2 - 1) * 20000 * Math.exp(-i / 400)), i * 2);
    const from = c.msgs.length;
    await mic.play(click);
    await sleep(1500);
    assert.equal(c.ofType('interrupted', from).length, 0, 'the click interrupted the reply');
  } finally {
    await mic.stop();
    await c.close();
    await s.stop();
  }
});
