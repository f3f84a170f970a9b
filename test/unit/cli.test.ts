import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { afterAll, describe, expect, it } from 'vitest';
import { COMMANDS, commandHelp, generalHelp, parseCommandLine } from '../../src/cliHelp.ts';
import { MINIMUM_NODE, unsupportedNodeMessage } from '../../src/nodeVersion.ts';
import { makeTempDir, removeDir } from '../support/redis.ts';

/**
 * The command line a user finds: `dex-forward-auth --help`, `help <command>`, `<command> --help`
 * describe every command with its options and exit 0; unknown commands print the help and exit 2;
 * a Node older than 22.13 gets one sentence, never a stack trace.
 */

const root = fileURLToPath(new URL('../../', import.meta.url));
const cli = (...args: string[]) =>
  spawnSync(
    process.execPath,
    ['--experimental-strip-types', '--disable-warning=ExperimentalWarning', 'src/cli.ts', ...args],
    { cwd: root, encoding: 'utf8', env: { PATH: process.env['PATH'] } },
  );

describe('help texts', () => {
  it('the general help lists every command and the help and version options', () => {
    const text = generalHelp('1.2.3');
    expect(text).toContain('dex-forward-auth 1.2.3');
    for (const command of COMMANDS) expect(text).toMatch(new RegExp(`^  ${command} `, 'm'));
    expect(text).toContain('-h, --help');
    expect(text).toContain('-v, --version');
  });

  it('each command has its own help with its usage and options', () => {
    expect(commandHelp('serve', '1')).toMatch(/^Usage: dex-forward-auth serve\n/);
    expect(commandHelp('serve', '1')).toContain('OIDC_ISSUER_URL');
    expect(commandHelp('doctor', '1')).toContain('Usage: dex-forward-auth doctor [--json] [--host <host>]');
    expect(commandHelp('doctor', '1')).toContain('--json');
    expect(commandHelp('doctor', '1')).toContain('Exit status: 0 no problems');
    for (const name of ['DEMO_GATEWAY_PORT', 'DEMO_DEX_PORT', 'DEMO_AUTH_PORT', 'DEMO_REDIS', 'LOG_LEVEL']) {
      expect(commandHelp('demo', '1')).toContain(name);
    }
  });

  it.each([
    [['--help'], 'general'],
    [['-h'], 'general'],
    [['help'], 'general'],
    [['help', 'serve'], 'serve'],
    [['help', 'doctor'], 'doctor'],
    [['help', 'demo'], 'demo'],
    [['serve', '--help'], 'serve'],
    [['doctor', '-h'], 'doctor'],
    [['demo', '--help'], 'demo'],
  ] as const)('%j prints the %s help and exits 0', (argv, which) => {
    const expected = which === 'general' ? generalHelp('9') : commandHelp(which, '9');
    expect(parseCommandLine(argv, '9')).toEqual({ kind: 'print', text: expected, exitCode: 0 });
  });

  it('no command runs serve; doctor gets its options', () => {
    expect(parseCommandLine([], '9')).toEqual({ kind: 'run', command: 'serve', args: [] });
    expect(parseCommandLine(['doctor', '--json', '--host', 'a.example.com'], '9')).toEqual({
      kind: 'run',
      command: 'doctor',
      args: ['--json', '--host', 'a.example.com'],
    });
    expect(parseCommandLine(['--version'], '9')).toEqual({ kind: 'print', text: '9\n', exitCode: 0 });
  });

  it('an unknown command prints the help with a did-you-mean and exits 2', () => {
    const result = parseCommandLine(['serv'], '9');
    expect(result.kind).toBe('usage');
    if (result.kind !== 'usage') return;
    expect(result.exitCode).toBe(2);
    expect(result.text).toContain('unknown command "serv" (did you mean `serve`?)');
    expect(result.text).toContain(generalHelp('9'));
    expect(parseCommandLine(['help', 'nothing'], '9').kind).toBe('usage');
    expect(parseCommandLine(['--port', '80'], '9').kind).toBe('usage');
  });

  it('serve and demo refuse arguments they do not take, with their help', () => {
    const result = parseCommandLine(['serve', '--port', '80'], '9');
    expect(result).toMatchObject({ kind: 'usage', exitCode: 2 });
    expect(result.kind === 'usage' && result.text).toContain(commandHelp('serve', '9'));
  });
});

describe('the dex-forward-auth command', () => {
  it('--help, -h and help <command> print to stdout and exit 0', () => {
    for (const args of [['--help'], ['-h'], ['help', 'demo'], ['doctor', '--help']]) {
      const run = cli(...args);
      expect(run.status, args.join(' ')).toBe(0);
      expect(run.stdout).toContain('Usage: dex-forward-auth');
      expect(run.stderr).toBe('');
    }
    expect(cli('help', 'doctor').stdout).toContain('--host <host>');
  });

  it('an unknown command prints the help to stderr and exits 2', () => {
    const run = cli('bogus');
    expect(run.status).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain('unknown command "bogus"');
    expect(run.stderr).toContain('Commands:');
  });

  it('doctor with a bad option exits 2', () => {
    expect(cli('doctor', '--nope').status).toBe(2);
  });
});

describe('the Node version guard', () => {
  it('accepts 22.13 and newer, and says in one sentence what an older Node needs', () => {
    expect(MINIMUM_NODE).toEqual([22, 13]);
    expect(unsupportedNodeMessage('22.13.0')).toBeUndefined();
    expect(unsupportedNodeMessage('24.1.0')).toBeUndefined();
    expect(unsupportedNodeMessage('v23.0.0')).toBeUndefined();
    const message = unsupportedNodeMessage('22.12.9');
    expect(message).toContain('needs Node.js 22.13 or newer');
    expect(message).toContain('this is Node v22.12.9');
    expect(unsupportedNodeMessage('18.19.0')?.split('\n')).toHaveLength(1);
  });

  it('agrees with package.json engines and the launcher', () => {
    const pkg = JSON.parse(readFileSync(`${root}package.json`, 'utf8')) as { engines: { node: string } };
    expect(pkg.engines.node).toBe(`>=${MINIMUM_NODE.join('.')}`);
    const launcher = readFileSync(`${root}scripts/node24.mjs`, 'utf8');
    expect(launcher).toContain(`export const MINIMUM = [${MINIMUM_NODE.join(', ')}];`);
  });

  // The machine's own Node (Debian's, older than 22.13) runs the compiled CLI, as `npm start` would.
  const oldNode = '/usr/bin/node';
  const oldVersion = existsSync(oldNode)
    ? spawnSync(oldNode, ['--version'], { encoding: 'utf8' }).stdout.trim()
    : '';
  let dir: string | undefined;
  afterAll(async () => {
    if (dir) await removeDir(dir);
  });

  it.skipIf(oldVersion === '' || unsupportedNodeMessage(oldVersion) === undefined)(
    'an old Node running the compiled CLI gets that sentence on stderr and exit 1, no stack trace',
    async () => {
      dir = await makeTempDir('cli-old-node');
      // Only the modules the CLI loads before the guard stops it (the rest is imported later).
      for (const name of ['cli', 'nodeVersion', 'cliHelp', 'version']) {
        const source = readFileSync(`${root}src/${name}.ts`, 'utf8');
        const { outputText } = ts.transpileModule(source, {
          compilerOptions: {
            module: ts.ModuleKind.ESNext,
            target: ts.ScriptTarget.ES2022,
            rewriteRelativeImportExtensions: true,
          },
          fileName: `${name}.ts`,
        });
        const file = join(dir, 'dist', 'src', `${name}.js`);
        mkdirSync(dirname(file), { recursive: true });
        writeFileSync(file, outputText);
      }
      writeFileSync(join(dir, 'package.json'), '{"type":"module","version":"0.0.0"}');
      for (const args of [['--help'], ['serve']]) {
        const run = spawnSync(oldNode, [join(dir, 'dist', 'src', 'cli.js'), ...args], { encoding: 'utf8' });
        expect(run.status).toBe(1);
        expect(run.stdout).toBe('');
        expect(run.stderr).toBe(`${unsupportedNodeMessage(oldVersion)}\n`);
        expect(run.stderr).not.toMatch(/^\s+at /m);
      }
    },
  );
});
