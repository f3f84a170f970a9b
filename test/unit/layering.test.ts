import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * Imports point down (STYLE "A layout that shows the architecture", issue 14): a folder imports
 * only folders of a lower layer. Authentication (src/identity/: claims → Identity, bearer tokens,
 * AUTHENTICATION_CONFIG) sits below both the sessions and the authorization decisions, and
 * authz/ holds pure decisions of (identity, request): of identity/ it sees the Identity type only.
 */

const SRC = fileURLToPath(new URL('../../src/', import.meta.url));

/** The layer of each top-level folder or file of src/ (higher imports lower, never the reverse). */
const LAYER: Record<string, number> = {
  'clock.ts': 0,
  'errors.ts': 0,
  'log.ts': 0,
  'version.ts': 0,
  'nodeVersion.ts': 0,
  'metrics.ts': 1,
  audit: 1,
  forward: 1,
  config: 2,
  memory: 0,
  identity: 3,
  http: 4,
  oidc: 5,
  authz: 5,
  session: 6,
  security: 7,
  preflight: 8,
  doctor: 9,
  'deps.ts': 9,
  routes: 10,
  'app.ts': 11,
  'listeners.ts': 12,
  'processGuards.ts': 12,
  'adminClient.ts': 1,
  'cliHelp.ts': 12,
  'main.ts': 13,
  'cli.ts': 14,
};

interface Edge {
  readonly from: string;
  readonly to: string;
}

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory()
      ? sources(join(dir, entry.name))
      : entry.name.endsWith('.ts')
        ? [join(dir, entry.name)]
        : [],
  );
}

/** The folder a path belongs to (`config.ts` is the face of `config/`). */
const top = (path: string) => (path.split('/')[0] as string).replace(/^(config|preflight)\.ts$/, '$1');

function edges(): Edge[] {
  const out: Edge[] = [];
  for (const file of sources(SRC)) {
    const from = relative(SRC, file);
    for (const m of readFileSync(file, 'utf8').matchAll(/from '(\.[^']+)'/g)) {
      const to = normalize(join(dirname(from), m[1] as string));
      out.push({ from, to });
    }
  }
  return out;
}

describe('imports point down', () => {
  const all = edges();

  it('every folder of src/ has a layer', () => {
    const unknown = new Set(all.flatMap((e) => [top(e.from), top(e.to)]).filter((t) => !(t in LAYER)));
    expect([...unknown]).toEqual([]);
  });

  it('no import reaches a folder of the same or a higher layer', () => {
    const upward = all
      .filter((e) => top(e.from) !== top(e.to))
      .filter((e) => (LAYER[top(e.to)] ?? 99) >= (LAYER[top(e.from)] ?? -1))
      .map((e) => `${e.from} → ${e.to}`);
    expect(upward).toEqual([]);
  });

  it('authz/ imports neither oidc/ nor session/ nor any of identity/ but the Identity type', () => {
    const outside = all
      .filter((e) => top(e.from) === 'authz')
      .filter(
        (e) =>
          ['oidc', 'session', 'routes'].includes(top(e.to)) ||
          (top(e.to) === 'identity' && e.to !== 'identity/identity.ts'),
      )
      .map((e) => `${e.from} → ${e.to}`);
    expect(outside).toEqual([]);
  });

  it('identity/ (authentication) imports none of session/, authz/, oidc/ or routes/', () => {
    const outside = all
      .filter((e) => top(e.from) === 'identity')
      .filter((e) => ['session', 'authz', 'oidc', 'routes', 'http'].includes(top(e.to)))
      .map((e) => `${e.from} → ${e.to}`);
    expect(outside).toEqual([]);
  });
});
