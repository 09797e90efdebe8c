// A real PostgreSQL server for tests: Debian's, in a temporary data directory, on a free loopback
// port (and a Unix socket in that directory), run as an unprivileged user (nobody, when the
// tests run as root: PostgreSQL refuses root).
import { spawn, execFileSync } from 'node:child_process';
import { chownSync, readdirSync, existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, tempDir } from './parley.mjs';

// The newest installed server's programs (/usr/lib/postgresql/N/bin).
export function postgresBin() {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root) ? readdirSync(root).filter((v) => /^\d+$/.test(v)).sort((a, b) => b - a) : [];
  for (const v of versions) if (existsSync(join(root, v, 'bin', 'postgres'))) return join(root, v, 'bin');
  throw new Error('no PostgreSQL server in /usr/lib/postgresql: install the postgresql package (scripts/packages.txt)');
}

// Who runs the server: nobody (uid/gid of /etc/passwd) when we are root, else ourselves.
function runAs() {
  if (process.getuid() !== 0) return {};
  const line = execFileSync('getent', ['passwd', 'nobody'], { encoding: 'utf8' }).trim().split(':');
  return { uid: Number(line[2]), gid: Number(line[3]) };
}

const running = new Set();
process.on('exit', () => {
  for (const p of running) p.kill('SIGKILL');
});

// Starts a fresh cluster; resolves to { url, port, dir, sql(query), restart(), stop() } once it
// accepts connections. `url` is a database `parley` owned by the role `parley`.
export async function startPostgres({ log = () => {} } = {}) {
  const bin = postgresBin();
  const who = runAs();
  const dir = tempDir();
  if (who.uid !== undefined) chownSync(dir, who.uid, who.gid);
  const data = join(dir, 'data');
  const env = { PATH: process.env.PATH, LANG: 'C.UTF-8', HOME: dir };
  const opts = { ...who, env, cwd: dir };
  execFileSync(join(bin, 'initdb'), ['-D', data, '-U', 'parley', '--auth=trust', '--no-locale', '-E', 'UTF8', '--no-sync'], { ...opts, stdio: 'pipe' });
  const port = await freePort();
  let proc = null;
  let output = '';
  const start = async () => {
    if (proc && proc.exitCode === null && proc.signalCode === null) return; // running
    output = '';
    proc = spawn(join(bin, 'postgres'), ['-D', data, '-p', String(port), '-h', '127.0.0.1', '-k', dir, '-c', 'max_connections=50', '-c', 'fsync=on'], { ...opts, stdio: ['ignore', 'pipe', 'pipe'] });
    running.add(proc);
    const p = proc;
    p.on('exit', () => running.delete(p));
    p.stdout.on('data', (d) => (output += d));
    p.stderr.on('data', (d) => {
      output += d;
      log(String(d));
    });
    const end = Date.now() + 30000;
    for (;;) {
      if (p.exitCode !== null) throw new Error('PostgreSQL exited:\n' + output);
      try {
        execFileSync(join(bin, 'pg_isready'), ['-q', '-h', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' });
        return;
      } catch {}
      if (Date.now() > end) throw new Error('PostgreSQL did not start:\n' + output);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const stopServer = async (signal = 'SIGINT') => {
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const p = proc;
    const gone = new Promise((ok) => p.on('exit', ok));
    p.kill(signal); // SIGINT: fast shutdown (sessions cut, everything committed kept)
    await gone;
  };
  await start();
  const psql = (db, query) =>
    execFileSync(join(bin, 'psql'), ['-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', String(port), '-U', 'parley', '-d', db, '-c', query], { env, encoding: 'utf8' }).trim();
  psql('postgres', 'CREATE DATABASE parley');
  return {
    url: `postgresql://parley@127.0.0.1:${port}/parley`,
    port,
    dir,
    // One statement's rows, '|' between columns, one row a line.
    sql: (query, db = 'parley') => psql(db, query),
    output: () => output,
    // A shutdown ('SIGINT' fast, 'SIGQUIT' immediate: a crash) and a start on the same port.
    async restart({ signal = 'SIGINT', downMs = 0 } = {}) {
      await stopServer(signal);
      if (downMs) await new Promise((r) => setTimeout(r, downMs));
      await start();
    },
    stopServer,
    start,
    async stop() {
      await stopServer();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
