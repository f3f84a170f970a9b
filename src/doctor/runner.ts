import { readdirSync } from 'node:fs';
import { describeError } from '../errors.ts';
import { checkConfiguration } from './configuration.ts';
import { doctorContext } from './context.ts';
import { formatReport } from './format.ts';
import type { Check, DoctorCheck, DoctorContext, DoctorReport } from './types.ts';

/**
 * `dex-forward-auth doctor`: loads the configuration exactly as `serve` does, then runs every
 * check in src/doctor/checks/ against the live provider and Redis, prints one line per finding and
 * exits 0 (warnings allowed), 1 (a problem) or 2 (bad arguments). It never prints a secret.
 * A check is one file in checks/ exporting `check` (a DoctorCheck): the runner finds it there.
 */

export interface DoctorOptions {
  readonly readFile?: (path: string) => string;
  /** Per network call, ms (default 5000). */
  readonly timeoutMs?: number;
  /** Extra protected hosts whose per-host callback URL should be checked (`--host`). */
  readonly hosts?: readonly string[];
  /** A sample JWT to map (`--token`); never printed. */
  readonly token?: string;
  /** An AuthenticationConfiguration to check instead of AUTHENTICATION_CONFIG (`--authentication-config`). */
  readonly authenticationConfig?: string;
}

const CHECKS_DIR = new URL('./checks/', import.meta.url);
let loaded: Promise<DoctorCheck[]> | undefined;

/** Every check in checks/ (source .ts or built .js), in report order. */
export function loadChecks(): Promise<DoctorCheck[]> {
  loaded ??= (async () => {
    const files = readdirSync(CHECKS_DIR)
      .filter((f) => /\.(ts|js)$/.test(f) && !/\.d\.ts$/.test(f))
      .sort();
    const modules = await Promise.all(
      files.map((f) => import(new URL(f, CHECKS_DIR).href) as Promise<{ check?: DoctorCheck }>),
    );
    const checks = modules.flatMap((m) => (m.check ? [m.check] : []));
    return checks.sort((a, b) => a.order - b.order);
  })();
  return loaded;
}

async function runCheck(check: DoctorCheck, ctx: DoctorContext): Promise<Check[]> {
  try {
    const findings = await check.run(ctx);
    return findings.map((f) => ({ topic: f.topic ?? check.topic, status: f.status, message: f.message }));
  } catch (error) {
    return [
      { topic: check.topic, status: 'problem', message: `the check itself failed: ${describeError(error)}` },
    ];
  }
}

export function report(checks: readonly Check[]): DoctorReport {
  return {
    checks,
    problems: checks.filter((c) => c.status === 'problem').length,
    warnings: checks.filter((c) => c.status === 'warning').length,
  };
}

/** Runs every check; never throws for a configuration or network problem. */
export async function runDoctor(
  env: Readonly<Record<string, string | undefined>>,
  options: DoctorOptions = {},
): Promise<DoctorReport> {
  const { config, checks } = checkConfiguration(env, options.readFile);
  if (!config) return report(checks);
  const ctx = doctorContext(config, options);
  for (const check of await loadChecks()) checks.push(...(await runCheck(check, ctx)));
  return report(checks);
}

const USAGE =
  'usage: dex-forward-auth doctor [--json] [--host <protected host>]… [--authentication-config <file>] [--token <jwt>]\n';

interface Arguments {
  json: boolean;
  hosts: string[];
  token?: string;
  authenticationConfig?: string;
}

/** `--name value` or `--name=value`; the index of the last argument used, or undefined. */
function optionValue(args: readonly string[], i: number, name: string): [string, number] | undefined {
  const arg = args[i] as string;
  if (arg === name && args[i + 1]) return [args[i + 1] as string, i + 1];
  if (arg.startsWith(`${name}=`)) return [arg.slice(name.length + 1), i];
  return undefined;
}

function parseArgs(args: readonly string[]): Arguments | undefined {
  const parsed: Arguments = { json: false, hosts: [] };
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--json') {
      parsed.json = true;
      continue;
    }
    const host = optionValue(args, i, '--host');
    const token = optionValue(args, i, '--token');
    const file = optionValue(args, i, '--authentication-config');
    const found = host ?? token ?? file;
    if (!found) return undefined;
    if (host) parsed.hosts.push(host[0]);
    else if (token) parsed.token = token[0];
    else if (file) parsed.authenticationConfig = file[0];
    i = found[1];
  }
  return parsed;
}

/** The CLI command: `doctor [--json] [--host <host>]…`; returns the exit status. */
export async function doctorCommand(
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  out: { write(text: string): unknown },
): Promise<number> {
  const parsed = parseArgs(args);
  if (!parsed) {
    out.write(USAGE);
    return 2;
  }
  const { json: _, ...options } = parsed;
  const result = await runDoctor(env, options);
  out.write(parsed.json ? `${JSON.stringify(result, null, 2)}\n` : formatReport(result));
  return result.problems === 0 ? 0 : 1;
}
