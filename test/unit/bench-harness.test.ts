import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseWrk, parseWrkDuration, runLoad } from '../bench/load.ts';
import { CYCLE_LUA } from '../bench/many.ts';
import { clockTicks, cpuSecondsOfStat } from '../bench/proc.ts';
import {
  alignTables,
  type ManyRow,
  README_END,
  type Results,
  targets,
  toMarkdown,
  writeReadme,
} from '../bench/report.ts';

/** The benchmark harness's parsers: a silently misread number would make the README table lie. */

// Real wrk 4.1.0 output; note the trailing space after "1.02s".
const WRK_OUTPUT = `Running 2s test @ http://127.0.0.1:46115/auth
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   228.46ms  201.48ms   1.02s    91.79%
    Req/Sec   378.38    306.69     1.14k    76.92%
  Latency Distribution
     50%  154.44ms
     75%  299.33ms
     90%  419.48ms
     99%    1.02s 
  643 requests in 2.02s, 811.91KB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:    318.99
Transfer/sec:    402.79KB
`;

describe('the benchmark harness', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it('reads throughput, percentiles, bad answers and socket errors from wrk output', () => {
    expect(parseWrk(WRK_OUTPUT)).toEqual({
      requests: 643,
      rps: 318.99,
      p50Ms: 154.44,
      p99Ms: 1020,
      bad: 5,
      errors: 3,
    });
  });

  it('converts every wrk duration unit to milliseconds and refuses anything else', () => {
    expect(parseWrkDuration('512.00us')).toBeCloseTo(0.512);
    expect(parseWrkDuration('1.50ms')).toBe(1.5);
    expect(parseWrkDuration('2.00s')).toBe(2000);
    expect(parseWrkDuration('1.00m')).toBe(60_000);
    expect(() => parseWrkDuration('fast')).toThrow(/unexpected wrk duration/);
  });

  it('refuses wrk output without a latency distribution instead of reporting zeros', () => {
    expect(() => parseWrk('Running 1s test\nRequests/sec: 1.0\n')).toThrow(/unexpected wrk output/);
  });

  it('takes CPU time from /proc stat fields, children included only when asked', () => {
    // pid (comm with spaces) state ppid … utime=300 stime=100 cutime=50 cstime=50
    const fields = Array.from({ length: 50 }, () => '0');
    fields[14 - 3] = '300';
    fields[15 - 3] = '100';
    fields[16 - 3] = '50';
    fields[17 - 3] = '50';
    fields[0] = 'S';
    const line = `1234 (node (worker) x) ${fields.join(' ')}`;
    expect(cpuSecondsOfStat(line)).toBeCloseTo(400 / clockTicks());
    expect(cpuSecondsOfStat(line, true)).toBeCloseTo(500 / clockTicks());
  });

  it('pads Markdown tables with right-aligned numeric columns and leaves prose alone', () => {
    const out = alignTables([
      'text',
      '| name | n |',
      '| --- | ---: |',
      '| a | 1,000 |',
      '| longer | 2 |',
      'after',
    ]);
    expect(out).toEqual([
      'text',
      '| name   |     n |',
      '| ------ | ----: |',
      '| a      | 1,000 |',
      '| longer |     2 |',
      'after',
    ]);
  });

  it("rewrites only the generated part of the README's Performance section", () => {
    const dir = mkdtempSync(join(tmpdir(), 'bench-readme-'));
    dirs.push(dir);
    const path = join(dir, 'README.md');
    writeFileSync(
      path,
      `# x\n\n## Performance\n\nhand-written\n\n<!-- bench:begin — old -->\nold table\n${README_END}\n\n## Next\n`,
    );
    writeReadme(path, '| new | 1 |\n');
    const text = readFileSync(path, 'utf8');
    expect(text).toContain('hand-written');
    expect(text).toContain('| new | 1 |');
    expect(text).not.toContain('old table');
    expect(text).toMatch(/## Next\n$/);
    writeReadme(path, 'again');
    expect(readFileSync(path, 'utf8').match(/bench:begin/g)).toHaveLength(1);
  });

  it('cycles wrk through every session cookie of the list, one per request, round robin', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bench-cycle-'));
    dirs.push(dir);
    const cookies = Array.from({ length: 7 }, (_, i) => `Fe26.2*cookie-${i}~2`);
    writeFileSync(join(dir, 'cookies.txt'), `${cookies.join('\n')}\n`);
    writeFileSync(join(dir, 'cycle.lua'), CYCLE_LUA);
    const seen = new Map<string, number>();
    const server = createServer((req, res) => {
      const cookie = req.headers.cookie ?? 'none';
      seen.set(cookie, (seen.get(cookie) ?? 0) + 1);
      res.writeHead(200, { 'Content-Length': '0' }).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const result = await runLoad('wrk', {
        url: `http://127.0.0.1:${port}/auth`,
        headers: { 'X-Forwarded-Host': 'app.localhost' },
        connections: 2,
        threads: 1,
        durationSec: 1,
        script: { path: join(dir, 'cycle.lua'), args: [join(dir, 'cookies.txt')] },
      });
      expect(result.requests).toBeGreaterThan(14);
    } finally {
      server.close();
    }
    expect([...seen.keys()].sort()).toEqual(cookies.map((c) => `_forward_auth=${c}`).sort());
    const counts = [...seen.values()];
    // Round robin: no cookie is asked more than a request or two more often than another.
    expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(3);
  });

  it('reports the many-sessions sweep with how the sessions were made, the ratio to bare and the cost of a miss', () => {
    const row: ManyRow = {
      sessions: 10_000,
      made: 'logins + sealed',
      makeSeconds: 21,
      madeNow: 9_000,
      rps: 9_000,
      p50Ms: 5,
      p99Ms: 9,
      cpuUsPerRequest: 90,
      bad: 0,
      errors: 0,
      bareRps: 15_000,
      bareP99Ms: 4,
      ratio: 0.6,
      rssAfterLoginsMiB: 120,
      rssAfterLoadMiB: 140,
      rssAnonAfterLoadMiB: 90,
      heapMiB: 80,
      cacheMiB: 40,
      redisBytesPerSession: 9_830,
      redisMiB: 100,
      outcomes: { allow: 90_000, cache_hits: 75, cache_misses: 25 },
    };
    const side = {
      rps: 4_000,
      p50Ms: 10,
      p99Ms: 20,
      cpuUsPerRequest: 240,
      bad: 0,
      errors: 0,
      rssAfterLoadMiB: 130,
    };
    const results: Results = {
      meta: {
        date: '2026-12-02',
        cpu: 'CPU',
        cores: 2,
        node: 'v24',
        loadTool: 'wrk 4.1.0',
        redis: '7',
        connections: 64,
        threads: 1,
        rounds: 3,
        durationSec: 5,
        quick: false,
        headerBytes: 1000,
        loadAverage: 0,
        busyAtStart: 0,
      },
      hot: [],
      scale: [],
      failures: [],
      many: {
        rows: [row],
        miss: {
          sessions: 10_000,
          small: { ...side, outcomes: { cache_hits: 1, cache_misses: 3 } },
          large: { ...side, rps: 9_000, cpuUsPerRequest: 90, outcomes: row.outcomes },
        },
      },
    };
    const text = toMarkdown(results);
    expect(text).toMatch(/\|\s+10,000 \| logins \+ sealed \(21 s\) \|\s+9,000 \|\s+0\.60 \|/);
    expect(text).toContain('9.6 KiB');
    expect(text).toContain('25 %');
    expect(text).toContain('120 MiB → 140 MiB (90 MiB)');
    expect(text).toMatch(/RSS after 10,000 sessions and load ≤ 150 MB\s+\| 147 MB \(94 MB anonymous\)/);
    expect(text).toContain('a miss costs about 150 µs of service CPU more than a hit');
    // The targets, judged from the same numbers: measured ones met or not, the rest open.
    const judged = Object.fromEntries(targets(results).map((t) => [t.target, t.met]));
    expect(judged['10,000 sessions: ≥ 0.6× bare']).toBe(true);
    expect(judged['10,000 sessions: p99 ≤ bare p99 + 5 ms']).toBe(true);
    expect(judged['RSS after 10,000 sessions and load ≤ 150 MB']).toBe(true); // 140 MiB = 147 MB
    expect(judged['100,000 sessions: ≥ 0.5× bare']).toBeUndefined();
    expect(judged['logins: ≥ 100/s']).toBeUndefined();
    const slower = { ...results, many: { rows: [{ ...row, ratio: 0.59, rssAfterLoadMiB: 144 }] } };
    const judgedSlower = Object.fromEntries(targets(slower).map((t) => [t.target, t.met]));
    expect(judgedSlower['10,000 sessions: ≥ 0.6× bare']).toBe(false);
    expect(judgedSlower['RSS after 10,000 sessions and load ≤ 150 MB']).toBe(false); // 151 MB
    expect(toMarkdown(slower)).toMatch(/10,000 sessions: ≥ 0\.6× bare\s+\| 0\.59×\s+\|\s+✗ \|/);
  });
});
