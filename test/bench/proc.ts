/**
 * Per-process CPU time and memory from /proc (Linux). CPU is utime + stime of /proc/<pid>/stat;
 * `childrenCpuSeconds` adds cutime + cstime, which is how the load generator's CPU is read: it
 * runs under a tiny shell that prints its own stat line once the generator has been waited for.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

let ticks: number | undefined;

/** Clock ticks per second (USER_HZ), usually 100. */
export function clockTicks(): number {
  if (ticks === undefined) {
    try {
      ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticks = 100;
    }
  }
  return ticks;
}

/** The fields of a /proc/<pid>/stat line after the command name, 0-based from field 3 (state). */
function statFields(line: string): string[] {
  const close = line.lastIndexOf(')');
  return line
    .slice(close + 2)
    .trim()
    .split(/\s+/);
}

/** utime + stime (+ cutime + cstime with `children`) of a stat line, in seconds. */
export function cpuSecondsOfStat(line: string, children = false): number {
  const f = statFields(line);
  // Field numbers (man 5 proc): utime 14, stime 15, cutime 16, cstime 17; f[0] is field 3.
  const at = (n: number) => Number(f[n - 3] ?? 0);
  const total = at(14) + at(15) + (children ? at(16) + at(17) : 0);
  return total / clockTicks();
}

/** CPU seconds a live process has used so far, or undefined when it is gone. */
export function cpuSeconds(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    return cpuSecondsOfStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return undefined;
  }
}

/** A `… kB` field of /proc/<pid>/status in MiB, or undefined when the process is gone. */
function statusMiB(pid: number | undefined, field: 'VmRSS' | 'RssAnon'): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+)\\s+kB$`, 'm').exec(
      readFileSync(`/proc/${pid}/status`, 'utf8'),
    );
    return m?.[1] === undefined ? undefined : Number(m[1]) / 1024;
  } catch {
    return undefined;
  }
}

/** Resident set size in MiB (VmRSS), or undefined when the process is gone. */
export const rssMiB = (pid: number | undefined): number | undefined => statusMiB(pid, 'VmRSS');

/**
 * The anonymous part of the resident set in MiB (RssAnon: heap, stacks, buffers), or undefined.
 * The rest is mapped files — above all the node binary's own code (~50 MiB of Node 24), shared
 * and reclaimable.
 */
export const rssAnonMiB = (pid: number | undefined): number | undefined => statusMiB(pid, 'RssAnon');

/** CPU seconds the whole machine has spent busy (all cores; /proc/stat minus idle and iowait). */
export function machineBusySeconds(): number {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    const total = f.slice(0, 8).reduce((sum, n) => sum + n, 0);
    const idle = (f[3] ?? 0) + (f[4] ?? 0);
    return (total - idle) / clockTicks();
  } catch {
    return 0;
  }
}

/** Summed CPU seconds of several processes (a parent and its workers); undefined when none is alive. */
export function cpuSecondsOf(pids: readonly number[]): number | undefined {
  const known = pids.map(cpuSeconds).filter((v): v is number => v !== undefined);
  return known.length === 0 ? undefined : known.reduce((a, b) => a + b, 0);
}

/** Summed RSS in MiB of several processes; undefined when none is alive. */
export function rssMiBOf(pids: readonly number[]): number | undefined {
  const known = pids.map(rssMiB).filter((v): v is number => v !== undefined);
  return known.length === 0 ? undefined : known.reduce((a, b) => a + b, 0);
}
