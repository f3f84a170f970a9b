import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * ARCHITECTURE.md stays true (issue 14 item 8): every path it names exists, its links land, its
 * table of layers agrees with the one test/unit/layering.test.ts enforces, and every folder of
 * src/ is on it. Moving or adding a folder means updating the map in the same change.
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const read = (path: string) => readFileSync(`${ROOT}${path}`, 'utf8');
const map = read('ARCHITECTURE.md');

/** Code spans that name a path in the repository: `src/…`, `test/…`, `views/…`, … */
function namedPaths(markdown: string): string[] {
  const spans = [...markdown.matchAll(/`([^`\s]+)`/g)].map((m) => m[1] as string);
  return spans.filter((s) => /^(src|test|views|deploy|scripts)\//.test(s));
}

/** GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens. */
const anchorOf = (heading: string) =>
  heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N} _-]/gu, '')
    .replace(/ /g, '-');

function anchors(markdown: string): Set<string> {
  return new Set([...markdown.matchAll(/^#{1,6} (.+)$/gm)].map((m) => anchorOf(m[1] as string)));
}

/** The LAYER table of the layering test, as written there. */
function enforcedLayers(): Map<string, number> {
  const block = /const LAYER[^{]*\{([\s\S]*?)\n\};/.exec(read('test/unit/layering.test.ts'))?.[1] ?? '';
  return new Map(
    [...block.matchAll(/^\s*'?([\w.]+)'?: (\d+),/gm)].map((m) => [m[1] as string, Number(m[2])] as const),
  );
}

/** The map's table of layers: each `src/x/` or `src/x.ts` of a row (as `x`, `x.ts`), with the row's layer. */
function mappedLayers(markdown: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const row of markdown.matchAll(/^\|\s*(\d+)\s*\|([^|]*)\|/gm)) {
    for (const path of namedPaths(row[2] as string)) {
      const name = path.replace(/^src\//, '').replace(/\/$/, '');
      out.set(name, Number(row[1]));
      // `preflight.ts`, `config.ts`: the layering test knows a file by its folder's name too.
      out.set(name.replace(/\.ts$/, ''), Number(row[1]));
    }
  }
  return out;
}

describe('ARCHITECTURE.md', () => {
  it('names only paths that exist', () => {
    const paths = namedPaths(map);
    expect(paths.length).toBeGreaterThan(50);
    expect(paths.filter((p) => !existsSync(`${ROOT}${p}`))).toEqual([]);
  });

  it('links only to files and README sections that exist', () => {
    const links = [...map.matchAll(/\]\(([^)#\s]+)(?:#([^)\s]+))?\)/g)];
    expect(links.length).toBeGreaterThan(0);
    const broken = links.filter(([, file, anchor]) => {
      if (!existsSync(`${ROOT}${file}`)) return true;
      return anchor !== undefined && !anchors(read(file as string)).has(anchor);
    });
    expect(broken.map((l) => l[0])).toEqual([]);
  });

  it('gives every folder and file its layer as the layering test enforces it', () => {
    const mapped = mappedLayers(map);
    const wrong = [...enforcedLayers()]
      .filter(([name, layer]) => mapped.get(name) !== layer)
      .map(([name, layer]) => `${name}: layer ${layer} in layering.test.ts, ${mapped.get(name)} in the map`);
    expect(enforcedLayers().size).toBeGreaterThan(10);
    expect(wrong).toEqual([]);
  });

  it('puts every folder of src/ on the map', () => {
    const folders = readdirSync(`${ROOT}src`, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => `src/${e.name}/`);
    expect(folders.filter((f) => !map.includes(`\`${f}\``))).toEqual([]);
  });

  it("is linked from the README's Layout section", () => {
    const layout =
      read('README.md')
        .split(/^## Layout$/m)[1]
        ?.split(/^## /m)[0] ?? '';
    expect(layout).toContain('(ARCHITECTURE.md)');
  });
});
