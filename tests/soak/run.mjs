// make soak: simulated clients hold long conversations while the server is killed and
// restarted (tests/lib/soak.mjs); prints the figures and fails on any problem.
//   node tests/soak/run.mjs [--clients 8] [--turns 100] [--kills 2] [--seed 1] [--json FILE]
import { writeFileSync } from 'node:fs';
import { runSoak } from '../lib/soak.mjs';

const opt = { clients: 8, turns: 100, kills: 2, seed: 1, json: '' };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const key = argv[i].replace(/^--/, '');
  if (!(key in opt) || argv[i + 1] === undefined) {
    console.error(`usage: node tests/soak/run.mjs [--clients N] [--turns N] [--kills 0-2] [--seed N] [--json FILE]`);
    process.exit(2);
  }
  opt[key] = key === 'json' ? argv[i + 1] : Number(argv[i + 1]);
}
const t = (s) => console.log(`soak: ${s}`);
t(`${opt.clients} clients x ${opt.turns} turns, ${opt.kills} kill -9 restarts, seed ${opt.seed}`);
const { figures: f, problems } = await runSoak({ ...opt, log: t });
const row = (k, v) => console.log(`  ${k.padEnd(40)} ${v}`);
console.log('');
row('turns (all clients)', `${f.turns} in ${f.seconds} s`);
row('text / voice / barge-in / disconnect', `${f.text} / ${f.voice} / ${f.barge} / ${f.disconnect}`);
row('malformed messages', f.malformed);
row('resumes / turns cut by a restart', `${f.resumed} / ${f.cut}`);
row('server restarts after kill -9', f.restarts);
row('turns seen finished, all in store', `${f.finished_seen} (store holds ${f.stored})`);
row('RSS after warm-up -> end (KiB)', `${f.baseline.rssKiB} -> ${f.end.rssKiB} (${f.rss_change_pct > 0 ? '+' : ''}${f.rss_change_pct}%)`);
row('threads after warm-up -> end', `${f.baseline.threads} -> ${f.end.threads}`);
row('file descriptors after warm-up -> end', `${f.baseline.fds} -> ${f.end.fds}`);
if (opt.json) writeFileSync(opt.json, JSON.stringify({ ...f, problems }, null, 2));
console.log('');
if (problems.length) {
  for (const p of problems) console.log(`PROBLEM: ${p}`);
  process.exit(1);
}
console.log('soak: every finished turn stored exactly once; memory, threads and descriptors back to their warm-up level');
