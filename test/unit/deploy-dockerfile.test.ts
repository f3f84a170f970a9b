import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * deploy/Dockerfile cannot be built here (no Docker engine), so it is linted for the rules the
 * issue states: multi-stage, a small pinned runtime base, `npm ci --omit=dev`, a non-root user,
 * nothing that needs a writable root filesystem, a HEALTHCHECK on /healthz, exec-form entrypoint;
 * and the build context (.dockerignore) holds what the COPY lines need and nothing secret.
 */

const root = fileURLToPath(new URL('../../', import.meta.url));

interface Instruction {
  readonly op: string;
  readonly args: string;
}
interface Stage {
  readonly base: string;
  readonly name: string | undefined;
  readonly instructions: Instruction[];
}

/** Instructions (continuations joined, comments dropped) grouped by stage. */
function parseDockerfile(text: string): { args: Instruction[]; stages: Stage[] } {
  const logical: string[] = [];
  let current = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (current === '' && (line === '' || line.startsWith('#'))) continue;
    if (line.startsWith('#')) continue;
    if (line.endsWith('\\')) {
      current += `${line.slice(0, -1)} `;
      continue;
    }
    logical.push(current + line);
    current = '';
  }
  const args: Instruction[] = [];
  const stages: Stage[] = [];
  for (const line of logical) {
    const m = /^(\w+)\s+([\s\S]*)$/.exec(line);
    if (!m) continue;
    const op = (m[1] as string).toUpperCase();
    const rest = (m[2] as string).trim();
    if (op === 'FROM') {
      const from = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest);
      stages.push({ base: from?.[1] ?? rest, name: from?.[2], instructions: [] });
    } else if (stages.length === 0) {
      args.push({ op, args: rest });
    } else {
      (stages.at(-1) as Stage).instructions.push({ op, args: rest });
    }
  }
  return { args, stages };
}

const dockerfile = readFileSync(`${root}deploy/Dockerfile`, 'utf8');
const { args: globalArgs, stages } = parseDockerfile(dockerfile);
const runtime = stages.at(-1) as Stage;
const all = (stage: Stage, op: string) => stage.instructions.filter((i) => i.op === op);
const resolveArgs = (text: string) =>
  text.replace(/\$\{(\w+)\}/g, (_, name: string) => {
    const arg = globalArgs.find((a) => a.op === 'ARG' && a.args.startsWith(`${name}=`));
    return arg ? arg.args.slice(name.length + 1) : `\${${name}}`;
  });

describe('deploy/Dockerfile', () => {
  it('is a multi-stage build whose stages each start from a pinned image', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    for (const stage of stages) {
      const image = resolveArgs(stage.base);
      expect(image, stage.base).toMatch(/^[\w./-]+:[\w.-]+(@sha256:[0-9a-f]{64})?$/);
      expect(image).not.toMatch(/:latest$/);
    }
  });

  it('runs on a small runtime base (distroless, alpine or slim) without the build tool chain', () => {
    expect(resolveArgs(runtime.base)).toMatch(/distroless|alpine|slim/);
    for (const run of all(runtime, 'RUN')) expect(run.args).not.toMatch(/npm (ci|install)|apt-get|apk add/);
    const copies = all(runtime, 'COPY').map((c) => c.args);
    expect(copies.some((c) => /--from=\S+ \S*node_modules/.test(c))).toBe(true);
    expect(copies.some((c) => /--from=\S+ \S*dist/.test(c))).toBe(true);
  });

  it('installs the runtime dependencies with npm ci --omit=dev, from the lock file', () => {
    const fromStage = /--from=(\S+)\s+\S*node_modules/.exec(
      all(runtime, 'COPY')
        .map((c) => c.args)
        .join('\n'),
    )?.[1];
    const deps = stages.find((s) => s.name === fromStage);
    expect(deps, `stage ${fromStage}`).toBeDefined();
    const runs = all(deps as Stage, 'RUN')
      .map((r) => r.args)
      .join('\n');
    expect(runs).toMatch(/npm ci\b[^\n]*--omit=dev/);
    expect(
      all(deps as Stage, 'COPY')
        .map((c) => c.args)
        .join('\n'),
    ).toContain('package-lock.json');
  });

  it('runs npm ci once in each install stage, on the copied lock file, without package scripts', () => {
    for (const stage of stages.filter((s) => all(s, 'RUN').some((r) => /npm ci\b/.test(r.args)))) {
      const runs = all(stage, 'RUN').filter((r) => /\bnpm (ci|install|i)\b/.test(r.args));
      expect(runs, stage.name).toHaveLength(1);
      expect((runs[0] as Instruction).args).toMatch(/npm ci\b[^&]*--ignore-scripts/);
      const lockCopied = stage.instructions.findIndex(
        (i) => i.op === 'COPY' && i.args.includes('package-lock.json'),
      );
      expect(lockCopied, stage.name).toBeGreaterThanOrEqual(0);
      expect(lockCopied).toBeLessThan(stage.instructions.indexOf(runs[0] as Instruction));
    }
  });

  it('runs as a non-root user, by numeric id so runAsNonRoot can verify it', () => {
    const users = all(runtime, 'USER');
    expect(users.length).toBeGreaterThan(0);
    const user = (users.at(-1) as Instruction).args.split(':')[0] as string;
    expect(user).toMatch(/^\d+$/);
    expect(Number(user)).toBeGreaterThan(0);
  });

  it('needs no writable root filesystem: no VOLUME, no chown to the runtime user, nothing written at start', () => {
    expect(all(runtime, 'VOLUME')).toEqual([]);
    for (const copy of all(runtime, 'COPY')) expect(copy.args).not.toMatch(/--chown|--chmod/);
    expect(all(runtime, 'RUN')).toEqual([]);
    // The service writes no files: its only write-capable dependency paths are stdout/stderr.
    expect(dockerfile).not.toMatch(/NODE_COMPILE_CACHE|npm_config_cache/);
  });

  it('has a HEALTHCHECK on /healthz that needs no shell or curl', () => {
    const checks = all(runtime, 'HEALTHCHECK');
    expect(checks).toHaveLength(1);
    const check = (checks[0] as Instruction).args;
    expect(check).toContain('/healthz');
    expect(check).toMatch(/CMD \[/);
    expect(check).toMatch(/--interval=\d+s/);
    expect(check).toMatch(/--timeout=\d+s/);
  });

  it('starts node directly in exec form, so SIGTERM reaches it and it drains', () => {
    const entry = all(runtime, 'ENTRYPOINT').at(-1)?.args ?? '';
    const parsed = JSON.parse(entry) as string[];
    expect(parsed[0]).toMatch(/node$/);
    expect(parsed).toContain('dist/src/cli.js');
    expect(JSON.parse(all(runtime, 'CMD').at(-1)?.args ?? '[]')).toEqual(['serve']);
    expect(all(runtime, 'EXPOSE').map((e) => e.args)).toEqual(['4180 4181']);
    expect(
      all(runtime, 'ENV')
        .map((e) => e.args)
        .join(' '),
    ).toContain('NODE_ENV=production');
  });

  it('puts no secret into the image and fetches nothing with ADD', () => {
    for (const stage of stages) {
      expect(all(stage, 'ADD')).toEqual([]);
      for (const i of [...all(stage, 'ENV'), ...all(stage, 'ARG')]) {
        expect(i.args).not.toMatch(/SECRET|PASSWORD|TOKEN/i);
      }
    }
  });

  it('copies only files that exist, that .dockerignore lets into the build context', () => {
    const ignore = readFileSync(`${root}.dockerignore`, 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    // Our .dockerignore is an allow-list: exclude everything, then re-include.
    expect(ignore[0]).toBe('**');
    const included = ignore.filter((l) => l.startsWith('!')).map((l) => l.slice(1).replace(/\/\*\*$/, ''));
    for (const stage of stages) {
      for (const copy of all(stage, 'COPY')) {
        if (copy.args.includes('--from=')) continue;
        const parts = copy.args.split(/\s+/).filter((p) => !p.startsWith('--'));
        for (const source of parts.slice(0, -1)) {
          expect(existsSync(`${root}${source}`), source).toBe(true);
          expect(included, `${source} is excluded by .dockerignore`).toContain(source.replace(/\/$/, ''));
        }
      }
    }
    for (const never of ['**/node_modules', '**/.env']) expect(ignore).toContain(never);
    for (const kept of included) expect(kept).not.toMatch(/^(test|\.git|node_modules|dist|deploy)/);
  });

  it('builds what the runtime stage runs: the build compiles src/ to dist/src/ with cli.js', () => {
    const build = JSON.parse(readFileSync(`${root}tsconfig.build.json`, 'utf8')) as { include: string[] };
    expect(build.include).toEqual(['src']);
    const pkg = JSON.parse(readFileSync(`${root}package.json`, 'utf8')) as {
      scripts: Record<string, string>;
      bin: Record<string, string>;
    };
    expect(pkg.scripts['build']).toContain('tsconfig.build.json');
    expect(Object.values(pkg.bin)).toContain('dist/src/cli.js');
    expect(existsSync(`${root}src/cli.ts`)).toBe(true);
  });
});
