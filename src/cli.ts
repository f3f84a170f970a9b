#!/usr/bin/env node
import { serve } from './main.ts';

/** `dex-forward-auth serve` (default), `doctor`, `demo`. */
const command = process.argv[2] ?? 'serve';
switch (command) {
  case 'serve':
    await serve();
    break;
  case 'doctor': {
    // Checks the configuration live (provider, client, cookies, secrets, Redis); see src/doctor.ts.
    const { doctorCommand } = await import('./doctor.ts');
    process.exitCode = await doctorCommand(process.argv.slice(3), process.env, process.stdout);
    break;
  }
  case 'demo': {
    // The local demo (Dex stand-in, gateway, service, sample dashboard) lives in scripts/demo.ts and
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
    break;
  }
  default:
    process.stderr.write(
      `usage: dex-forward-auth [serve | doctor [--json] [--host <host>]… [--authentication-config <file>] [--token <jwt>] | demo]\n`,
    );
    process.exit(2);
}
