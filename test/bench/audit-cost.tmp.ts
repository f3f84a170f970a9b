import { Browser, loginThroughDex } from '../support/browser.ts';
import { DEMO_USERS } from '../support/dex.ts';
import { startStack } from '../support/stack.ts';
import { runLoad } from './load.ts';

const admin = DEMO_USERS.find((u) => u.login === 'admin@example.com')!;
const results: Record<string, number[]> = { all: [], none: [], off: [] };
const variants: [string, Record<string, string>][] = [
  ['all', { AUDIT_ALLOW: 'all' }],
  ['none', { AUDIT_ALLOW: 'none' }],
  ['off', { AUDIT_LOG: 'off' }],
];
const targets: { name: string; url: string; headers: Record<string, string>; close: () => Promise<void> }[] =
  [];
for (const [name, env] of variants) {
  const stack = await startStack({
    env: { ...env, LOG_LEVEL: 'warn' },
    replicas: { count: 1, processes: true, inProcess: false },
  });
  const browser = new Browser({ navigation: true });
  await loginThroughDex(browser, `${stack.appUrl}/x`, admin);
  const cookie = browser.cookies(stack.appUrl).find((c) => c.name === '_forward_auth')!.value;
  const host = new URL(stack.appUrl).host;
  targets.push({
    name,
    url: `${stack.replicas[0]!.url}/auth`,
    headers: {
      Cookie: `_forward_auth=${cookie}`,
      'X-Forwarded-Method': 'GET',
      'X-Forwarded-Proto': 'http',
      'X-Forwarded-Host': host,
      'X-Forwarded-Uri': '/dashboard',
      'X-Forwarded-For': '127.0.0.1',
      Accept: 'application/json',
    },
    close: () => stack.close(),
  });
}
for (const t of targets)
  await runLoad('wrk', { url: t.url, headers: t.headers, connections: 32, threads: 1, durationSec: 2 });
for (let round = 0; round < 5; round++) {
  for (const t of targets) {
    const r = await runLoad('wrk', {
      url: t.url,
      headers: t.headers,
      connections: 32,
      threads: 1,
      durationSec: 3,
    });
    results[t.name]!.push(Math.round(r.rps));
  }
}
for (const t of targets) await t.close();
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(
  JSON.stringify(results),
  JSON.stringify(Object.fromEntries(Object.entries(results).map(([k, v]) => [k, median(v)]))),
);
