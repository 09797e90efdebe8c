// The soak, short (make soak runs it long): conversations with disconnects, resumes, barge-ins
// and malformed messages while the server is killed (kill -9) and restarted twice. Every turn a
// client saw finish is in the store exactly once, as the client got it; threads and file
// descriptors go back to their warm-up level. (Memory is held to 10% in the long run only: a
// short run has no steady level to compare.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runSoak } from '../lib/soak.mjs';

test('soak, short: 3 clients x 11 turns, two kill -9 restarts; nothing finished is lost or doubled', async () => {
  const seed = Date.now() % 100000; // a failure says its seed: node tests/soak/run.mjs --seed N
  const { figures, problems } = await runSoak({ clients: 3, turns: 11, kills: 2, seed, rssLimit: 0 });
  assert.deepEqual(problems, [], `seed ${seed}: ${JSON.stringify(figures)}`);
  assert.equal(figures.restarts, 2);
  assert.ok(figures.finished_seen >= 10, JSON.stringify(figures));
  assert.equal(figures.turns, 33);
});
