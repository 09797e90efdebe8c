// Hands-free conversation against a real server: the Silero VAD finds each turn in a continuous
// microphone stream (LibriVox speech and silence at real-time pace), a second question barges
// in on the reply, a click does not, and the history keeps only what was heard.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, fetchHistory, Client, clips, readWav, Mic, clipBounds } from '../lib/parley.mjs';

const RATE = 16000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function clip(i) {
  const { rate, pcm } = readWav(clips[i].wav);
  assert.equal(rate, RATE);
  return { pcm, ...clipBounds(clips[i].wav, pcm) };
}

async function handsFree(args = [], start = {}, echoGain = 0.5) {
  const s = await startServer(['--max-tokens', '160', ...args]);
  const c = await Client.open(s.ws);
  const ready = await c.waitType('ready');
  c.send({ type: 'start', sample_rate: RATE, mode: 'hands_free', ...start });
  // A client without echo cancellation hears the reply in its microphone (EchoMic, below).
  const mic = start.echo_cancellation === false ? new EchoMic(c, ready.json.audio_format.sample_rate, echoGain) : new Mic(c);
  return { s, c, mic, id: ready.json.session_id, token: ready.json.resume_token };
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
    const tm = done.json.timings;
    assert.ok(tm.speech_end_ms < 0, 'the true end of speech is in the timings');
    // What the user waits: from the end of speech (before the decision) to the first audio.
    assert.ok(Math.abs(tm.speech_end_to_audio_ms - (tm.first_audio_ms - tm.speech_end_ms)) <= 1, JSON.stringify(tm));
  } finally {
    await mic.stop();
    await c.close();
    await s.stop();
  }
});

test('hands-free: speech during the reply interrupts it, the history keeps what was heard', async () => {
  const { s, c, mic, id, token } = await handsFree();
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
    const hist = await (await fetchHistory(s.url, id, token)).json();
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

// A client without echo cancellation: its speaker plays the reply and its microphone hears it
// again (6 dB down), mixed into what it sends, as a laptop on speakers does.
class EchoMic extends Mic {
  constructor(client, outRate, gain = 0.5) {
    super(client);
    this.outRate = outRate;
    this.gain = gain;
    this.speaker = []; // 16 kHz samples still to play
    client.ws.addEventListener('message', (e) => {
      if (typeof e.data === 'string') {
        if (JSON.parse(e.data).type === 'interrupted') this.speaker = []; // the client drops its queue
        return;
      }
      const pcm = new Int16Array(e.data);
      const n = Math.floor((pcm.length * RATE) / this.outRate);
      for (let i = 0; i < n; i++) this.speaker.push(pcm[Math.min(pcm.length - 1, Math.floor((i * this.outRate) / RATE))]);
    });
    const send = client.sendBinary.bind(client);
    client.sendBinary = (frame) => {
      const out = Buffer.from(frame);
      const echo = this.speaker.splice(0, out.length / 2);
      for (let i = 0; i < echo.length; i++) {
        const v = out.readInt16LE(i * 2) + Math.round(echo[i] * this.gain);
        out.writeInt16LE(Math.max(-32768, Math.min(32767, v)), i * 2);
      }
      send(out);
    };
  }
}

// The echo 6 dB down, and as loud as the reply (a loud speaker): the canceller's residual stays
// under the barge-in gate.
for (const [echo, gain] of [['auto', 0.5], ['auto', 1.0], ['off', 0.5]]) {
  // This client's echo has no delay at all (it mixes what it plays into the next frame it
  // sends): the echo canceller's delay line keeps AEC3 from locking onto a wrong delay on it
  // (it did in about 1 reply in 6; test-echo.cpp has the deterministic case).
  test(`hands-free without client echo cancellation, echo ${gain === 1 ? 'at 0 dB' : '6 dB down'}, server echo ${echo}: ${echo === 'off' ? 'the reply interrupts itself' : 'the reply plays out'}`, async () => {
    const { s, c, mic } = await handsFree(['--max-tokens', '60', '--echo', echo, '--speculative-silence-ms', '0'], { echo_cancellation: false }, gain);
    try {
      await mic.play(clip(1).pcm);
      const first = await c.waitFor((m) => m.json && m.json.type === 'text_chunk' && m.json.has_audio, { timeout: 30000 });
      const turn = first.json.turn_id;
      // Wait for the reply's audio to play out through the echo path.
      await c.waitType('response_done', { timeout: 30000 }).catch(() => {});
      for (let i = 0; i < 200 && mic.speaker.length > 0; i++) await sleep(100);
      await sleep(700);
      const cut = c.ofType('interrupted').filter((x) => x.turn_id === turn);
      if (echo === 'off') assert.ok(cut.length >= 1, 'without echo cancellation the reply hears itself and stops');
      else assert.equal(cut.length, 0, `the echo interrupted the reply: ${JSON.stringify(cut)}`);
    } finally {
      await mic.stop();
      await c.close();
      await s.stop();
    }
  });
}

test('hands-free with server echo cancellation: the user still barges in over the echo', async () => {
  const { s, c, mic } = await handsFree(['--speculative-silence-ms', '0'], { echo_cancellation: false });
  try {
    await mic.play(clip(1).pcm);
    const first = await c.waitFor((m) => m.json && m.json.type === 'text_chunk' && m.json.has_audio, { timeout: 30000 });
    await sleep(1000); // the echo canceller has heard the reply for a second
    const q = clip(3);
    const tPlay = await mic.play(q.pcm);
    const cut = await c.waitType('interrupted', { timeout: 10000 });
    const latency = cut.t - (tPlay + q.startMs);
    console.log(`barge-in over the echo: ${latency.toFixed(0)} ms after the onset`);
    assert.equal(cut.json.turn_id, first.json.turn_id);
    // About 400 ms here: the talker must be louder than the echo gate and speak for twice
    // --barge-in-ms (docs/architecture.md). A bound for a barge-in that works, not a benchmark.
    assert.ok(latency <= 1000, `interrupted ${latency.toFixed(0)} ms after the onset`);
  } finally {
    await mic.stop();
    await c.close();
    await s.stop();
  }
});
