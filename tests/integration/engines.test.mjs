// The quality engines inside the real pipeline: Whisper or Parakeet for ASR and a Piper voice
// for speech, with the tiny models that the unit tests generate in the real formats (random
// weights: the words are noise, so this checks the pipeline, not the words).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { startServer, Client, clips, voiceTurn, repo } from '../lib/parley.mjs';

const models = resolve(repo, 'build/test-models');
const whisper = `${models}/tiny-whisper.bin`;
const parakeet = `${models}/tiny-parakeet.bin`;
const piper = `${models}/piper/tiny-piper.onnx`;
const have = existsSync(whisper) && existsSync(parakeet) && existsSync(piper);
const skip = have ? false : 'generated models missing: run the unit tests first (make test does)';

for (const [asr, file] of [['whisper', whisper], ['parakeet', parakeet]]) {
  test(`${asr} transcribes and a Piper voice speaks the reply`, { skip }, async () => {
    const s = await startServer(['--asr', asr, '--asr-model', file, '--tts', 'piper', '--tts-model', piper, '--max-tokens', '24']);
    try {
      const c = await Client.open(s.ws);
      const ready = await c.waitType('ready');
      assert.equal(ready.json.tts, true);
      const t = await voiceTurn(c, clips[1], { realtime: false });
      assert.equal(typeof t.final.json.text, 'string');
      if (t.final.json.text.trim()) {
        assert.equal(t.done.json.type, 'response_done');
      }
      // A typed turn always gets a reply; Piper's audio follows each has_audio chunk.
      const from = c.msgs.length;
      c.send({ type: 'text', text: 'Tell me a story.' });
      await c.waitType('response_done', { from });
      const msgs = c.msgs.slice(from);
      let audio = 0;
      msgs.forEach((m, i) => {
        if (m.json && m.json.type === 'text_chunk' && m.json.has_audio) {
          assert.ok(msgs[i + 1] && msgs[i + 1].binary && msgs[i + 1].binary.length % 2 === 0);
          audio += msgs[i + 1].binary.length;
        }
      });
      assert.ok(audio > 0, 'Piper audio was sent');
      assert.ok(!c.ofType('error', from).length, JSON.stringify(c.ofType('error', from)));
      await c.close();
    } finally {
      await s.stop();
    }
  });
}
