#!/usr/bin/env node
// First, and alone among the static imports that do anything: an unsupported Node gets one sentence.
import './nodeVersion.ts';
import { parseCommandLine } from './cliHelp.ts';
import { VERSION } from './version.ts';

/**
 * `dex-forward-auth [serve] | doctor | sessions | demo | help [command] | version`. Everything else is loaded
 * on demand, after the Node version check.
 */
async function demo(): Promise<void> {
  // The local demo (Dex stand-in, gateway, service, sample dashboards) lives in scripts/demo.ts and
  // needs the development dependencies (npm ci); it is the same as `npm run demo`.
  const { existsSync } = await import('node:fs');
  const { spawn } = await import('node:child_process');
  const script = ['../scripts/demo.ts', '../../scripts/demo.ts']
    .map((p) => new URL(p, import.meta.url))
    .find((u) => existsSync(u));
  if (!script) {
    process.stderr.write(
      'demo: scripts/demo.ts is not part of this installation; run `npm run demo` in a clone\n',
    );
    process.exit(2);
  }
  const child = spawn(
    process.execPath,
    ['--experimental-strip-types', '--disable-warning=ExperimentalWarning', script.pathname],
    { stdio: 'inherit' },
  );
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => child.kill(signal));
  child.on('exit', (code) => process.exit(code ?? 0));
}

const invocation = parseCommandLine(process.argv.slice(2), VERSION);
switch (invocation.kind) {
  case 'print':
    process.stdout.write(invocation.text);
    break;
  case 'usage':
    process.stderr.write(invocation.text);
    process.exitCode = invocation.exitCode;
    break;
  case 'run':
    if (invocation.command === 'serve') {
      const { serve } = await import('./main.ts');
      await serve();
    } else if (invocation.command === 'doctor') {
      // Checks the configuration live (provider, client, cookies, secrets, Redis); see src/doctor/.
      const { doctorCommand } = await import('./doctor/index.ts');
      process.exitCode = await doctorCommand(invocation.args, process.env, process.stdout);
    } else if (invocation.command === 'sessions') {
      // The admin API's client (ADMIN_PORT): list and end sessions; see src/adminClient.ts.
      const { sessionsCommand } = await import('./adminClient.ts');
      process.exitCode = await sessionsCommand(invocation.args, process.env, process.stdout, process.stderr);
    } else {
      await demo();
    }
    break;
}
