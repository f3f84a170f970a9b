#!/usr/bin/env node
import { serve } from './main.ts';

/** `dex-forward-auth serve` (default), `doctor`. `demo` arrives with its issue. */
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
  default:
    process.stderr.write(`usage: dex-forward-auth [serve | doctor [--json] [--host <host>]…]\n`);
    process.exit(2);
}
