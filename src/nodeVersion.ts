/**
 * The first module the CLI loads. On a Node.js older than the one this project runs on it prints one
 * sentence and exits 1, before any other module is loaded: otherwise the first newer API to fail
 * (fs.globSync, type stripping, …) would end the process with a stack trace. Keep it free of imports
 * and of syntax newer than Node 16 understands.
 */
export const MINIMUM_NODE: readonly [number, number] = [22, 13];

export function unsupportedNodeMessage(version: string): string | undefined {
  const [major = 0, minor = 0] = version.replace(/^v/, '').split('.').map(Number);
  if (major > MINIMUM_NODE[0] || (major === MINIMUM_NODE[0] && minor >= MINIMUM_NODE[1])) return undefined;
  return `dex-forward-auth needs Node.js ${MINIMUM_NODE.join('.')} or newer (24 LTS recommended), but this is Node v${version.replace(/^v/, '')}: install Node 24, or in a clone of the repository use \`npm run cli -- <command>\`, which fetches it.`;
}

const message = unsupportedNodeMessage(process.versions.node);
if (message !== undefined) {
  process.stderr.write(`${message}\n`);
  process.exit(1);
}
