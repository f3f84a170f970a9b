#!/usr/bin/env node
import { serve } from './main.ts';

/** `dex-forward-auth serve` (default). `doctor` and `demo` arrive with their issues. */
const command = process.argv[2] ?? 'serve';
switch (command) {
  case 'serve':
    await serve();
    break;
  default:
    process.stderr.write(`usage: dex-forward-auth [serve]\n`);
    process.exit(2);
}
