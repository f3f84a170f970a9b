#!/usr/bin/env node
// Runs a project command under the project's Node (24 LTS; at least 22.13) whatever Node started it.
// Plain JavaScript that old Node versions (16 and later) can run, because this is what a machine with
// Node 20 executes first (`npm run demo`, `npm test`, `bash .ci/run`):
//
//   node scripts/node24.mjs [--need redis-server] <file> [args…]   run <file> (a .ts file type-stripped)
//   node scripts/node24.mjs --print-node                          print the path of a Node >= 22.13
//
// When the running Node is new enough it is used. Otherwise a pinned Node 24 is installed once from
// the npm registry (package node-<os>-<arch>, which holds the official binary) into
// ${XDG_CACHE_HOME:-$HOME/.cache}/dex-forward-auth/node24 and the command runs under it.
// `--need redis-server` (the test suite starts real Redis servers): when /usr/bin/redis-server is
// missing it is installed with apt-get if we are root on Debian/Ubuntu; otherwise one line says how.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';

export const MINIMUM = [22, 13];
export const PINNED_NODE = '24.22.3';
const TS_FLAGS = ['--experimental-strip-types', '--disable-warning=ExperimentalWarning'];

/** Whether a version string ("v20.20.2" or "24.1.0") is at least MINIMUM. */
export function isSupported(version) {
  const parts = String(version).replace(/^v/, '').split('.').map(Number);
  const major = parts[0] || 0;
  const minor = parts[1] || 0;
  return major > MINIMUM[0] || (major === MINIMUM[0] && minor >= MINIMUM[1]);
}

export function cacheDir(env) {
  const base = env.XDG_CACHE_HOME || join(env.HOME || homedir(), '.cache');
  return join(base, 'dex-forward-auth', 'node24');
}

function packageName() {
  const os = { linux: 'linux', darwin: 'darwin' }[process.platform];
  const arch = { x64: 'x64', arm64: 'arm64' }[process.arch];
  return os && arch ? `node-${os}-${arch}` : undefined;
}

function say(line) {
  process.stderr.write(`${line}\n`);
}

function installedVersion(dir, name) {
  try {
    return JSON.parse(readFileSync(join(dir, 'node_modules', name, 'package.json'), 'utf8')).version;
  } catch {
    return undefined;
  }
}

/** Installs the pinned Node 24 into the cache (into a temporary folder first, then renamed). */
function installNode(dir, name) {
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const args = ['install', '--no-save', '--no-package-lock', '--no-audit', '--no-fund', '--loglevel=error'];
  const result = spawnSync(npm, [...args, '--prefix', tmp, `${name}@${PINNED_NODE}`], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  if (result.status !== 0) {
    rmSync(tmp, { recursive: true, force: true });
    return false;
  }
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
  return true;
}

/** The path of a Node binary this project runs on, installing the pinned one when needed. */
export function projectNode(env = process.env) {
  if (isSupported(process.version)) return process.execPath;
  const name = packageName();
  if (!name) {
    say(
      `dex-forward-auth needs Node.js ${MINIMUM.join('.')} or newer (this is ${process.version}); install Node 24 LTS.`,
    );
    return undefined;
  }
  const dir = cacheDir(env);
  const bin = join(dir, 'node_modules', name, 'bin', 'node');
  if (existsSync(bin) && installedVersion(dir, name) === PINNED_NODE) {
    say(
      `Node ${process.version} is older than ${MINIMUM.join('.')}: running with Node ${PINNED_NODE} from ${dir}`,
    );
    return bin;
  }
  say(
    `Node ${process.version} is older than the ${MINIMUM.join('.')} this project needs: installing Node ${PINNED_NODE} once from the npm registry (${name}) into ${dir}`,
  );
  if (!installNode(dir, name) || !existsSync(bin)) {
    say(`could not install Node ${PINNED_NODE}; install Node 24 LTS yourself and run this again.`);
    return undefined;
  }
  return bin;
}

function hasAptAsRoot() {
  const root = typeof process.getuid === 'function' && process.getuid() === 0;
  return root && existsSync('/usr/bin/apt-get');
}

/** Makes sure redis-server is installed (the tests start their own on free loopback ports). */
export function needRedis(env = process.env) {
  const bin = env.REDIS_SERVER_BIN || '/usr/bin/redis-server';
  if (existsSync(bin)) return true;
  if (!hasAptAsRoot()) {
    say(
      `the tests need redis-server (${bin}): install it (Debian/Ubuntu: sudo apt-get install redis-server) and run this again.`,
    );
    return false;
  }
  say('redis-server is missing: installing it with apt-get (the tests start their own Redis servers)');
  const quiet = {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...env, DEBIAN_FRONTEND: 'noninteractive' },
  };
  spawnSync('apt-get', ['update', '-qq'], quiet);
  spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'redis-server'], quiet);
  // The package starts a system Redis on 6379; the tests never use it.
  spawnSync('service', ['redis-server', 'stop'], { stdio: 'ignore' });
  return existsSync(bin);
}

/** Runs `file args…` under `node`, passing signals on and exiting as the child does. */
function run(node, file, args) {
  const flags = file.endsWith('.ts') ? TS_FLAGS : [];
  // Tools started by the command (npm scripts, vitest workers) find the same Node first on PATH.
  const path = `${dirname(node)}${process.platform === 'win32' ? ';' : ':'}${process.env.PATH || ''}`;
  const child = spawn(node, [...flags, file, ...args], {
    stdio: 'inherit',
    env: { ...process.env, PATH: path },
  });
  // Signals go on to the command (as npm passes them to us); we wait for its exit.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => child.kill(signal));
  child.on('error', (error) => {
    say(`could not start ${node}: ${error.message}`);
    process.exit(1);
  });
  child.on('exit', (code, signal) => {
    if (signal) {
      process.removeAllListeners(signal);
      process.kill(process.pid, signal);
      return;
    }
    process.exit(code === null ? 1 : code);
  });
}

function main(argv) {
  const args = argv.slice();
  const needs = [];
  while (args[0] === '--need') {
    args.shift();
    needs.push(args.shift());
  }
  if (args[0] === '--print-node') {
    const node = projectNode();
    if (!node) return process.exit(1);
    process.stdout.write(`${node}\n`);
    return undefined;
  }
  if (args.length === 0) {
    say('usage: node scripts/node24.mjs [--need redis-server] <file> [args…] | --print-node');
    return process.exit(2);
  }
  for (const need of needs) {
    if (need !== 'redis-server') {
      say(`unknown --need ${need}`);
      return process.exit(2);
    }
    if (!needRedis()) return process.exit(1);
  }
  const node = projectNode();
  if (!node) return process.exit(1);
  return run(node, args[0], args.slice(1));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) main(process.argv.slice(2));
