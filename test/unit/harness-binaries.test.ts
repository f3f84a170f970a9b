import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type PinnedBinary, pinnedBinary } from '../support/fetchedBinary.ts';

/**
 * The tools the deploy tests fetch on demand (Helm, kustomize): a binary is used only when it is
 * the pinned one, and every other outcome is a reason the tests print when they skip.
 */
describe('a pinned binary fetched on demand', () => {
  const content = '#!/bin/sh\necho pinned\n';
  const pin: PinnedBinary = {
    name: 'tool',
    envVar: 'DFA_TEST_TOOL_BIN',
    npmPackage: '@example/tool-linux-x64@1.0.0',
    file: 'bin/tool',
    sha256: createHash('sha256').update(content).digest('hex'),
    cacheName: 'tool-v1.0.0',
  };
  let cache: string;
  let saved: string | undefined;

  beforeEach(() => {
    cache = mkdtempSync(join(tmpdir(), 'dfa-pinned-'));
    saved = process.env['XDG_CACHE_HOME'];
    process.env['XDG_CACHE_HOME'] = cache;
  });
  afterEach(() => {
    if (saved === undefined) delete process.env['XDG_CACHE_HOME'];
    else process.env['XDG_CACHE_HOME'] = saved;
    delete process.env[pin.envVar];
    rmSync(cache, { recursive: true, force: true });
  });

  it('names the variable when it points at nothing', () => {
    process.env[pin.envVar] = join(cache, 'missing');
    expect(pinnedBinary(pin)()).toEqual({ reason: `${pin.envVar}=${join(cache, 'missing')} does not exist` });
  });

  it.skipIf(process.platform !== 'linux' || process.arch !== 'x64')(
    'uses a cached copy with the pinned SHA-256 without installing anything, and asks only once',
    () => {
      const dir = join(
        cache,
        'dex-forward-auth',
        pin.cacheName,
        'node_modules',
        '@example',
        'tool-linux-x64',
      );
      mkdirSync(join(dir, 'bin'), { recursive: true });
      writeFileSync(join(dir, 'bin', 'tool'), content, { mode: 0o755 });
      const locate = pinnedBinary(pin);
      expect(locate()).toEqual({ bin: join(dir, 'bin', 'tool') });
      rmSync(dir, { recursive: true });
      expect(locate()).toEqual({ bin: join(dir, 'bin', 'tool') });
    },
  );
});
