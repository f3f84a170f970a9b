import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseWrk, parseWrkDuration } from '../bench/load.ts';
import { clockTicks, cpuSecondsOfStat } from '../bench/proc.ts';
import { alignTables, README_END, writeReadme } from '../bench/report.ts';

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
});
