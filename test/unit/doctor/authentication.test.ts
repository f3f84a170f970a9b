import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Check, doctorCommand, runDoctor } from '../../../src/doctor/index.ts';
import { DEMO_USERS, type Dex, startDex } from '../../support/dex.ts';

/**
 * `doctor` with an AuthenticationConfiguration, against the Dex stand-in: the file compiled as at
 * start-up, each issuer's discovery checked, and a sample token mapped by the file side by side
 * with the flag-style settings.
 */

const CLIENT_ID = 'forward-auth';
const dev = DEMO_USERS.find((u) => u.login === 'dev@example.com')!;
let dex: Dex;
let dir: string;
let env: Record<string, string>;

const file = (
  issuer: string,
  username = "'corp:' + claims.email.split('@')[0]",
) => `apiVersion: apiserver.config.k8s.io/v1
kind: AuthenticationConfiguration
jwt:
  - issuer: { url: "${issuer}", audiences: [${CLIENT_ID}] }
    claimValidationRules:
      - expression: "claims.?email_verified.orValue(true) == true"
    claimMappings:
      username: { expression: "${username}" }
      groups: { expression: "claims.groups.map(g, 'corp:' + g)" }
`;

beforeAll(async () => {
  dex = await startDex({
    clients: [{ clientId: CLIENT_ID, clientSecret: 'doctor-secret-0123456789', redirectUris: [] }],
  });
  dir = mkdtempSync(join(tmpdir(), 'doctor-authn-'));
  writeFileSync(join(dir, 'good.yaml'), file(dex.issuer));
  writeFileSync(join(dir, 'broken.yaml'), file(dex.issuer, 'claims.email +'));
  env = {
    OIDC_ISSUER_URL: dex.issuer,
    OIDC_ALLOW_INSECURE_HTTP: 'true',
    OIDC_CLIENT_ID: CLIENT_ID,
    OIDC_CLIENT_SECRET: 'doctor-secret-0123456789',
    COOKIE_SECRET: randomBytes(32).toString('base64url'),
  };
});
afterAll(async () => {
  await dex?.close();
  rmSync(dir, { recursive: true, force: true });
});

const about = (checks: readonly Check[], topic: string) => checks.filter((c) => c.topic === topic);

describe('doctor with AUTHENTICATION_CONFIG', () => {
  it("compiles the file, checks the issuer's discovery, and shows the demo user mapped by the file and by the flags", async () => {
    const report = await runDoctor({ ...env, AUTHENTICATION_CONFIG: join(dir, 'good.yaml') });
    expect(about(report.checks, 'authentication config')[0]).toMatchObject({ status: 'ok' });
    expect(about(report.checks, 'authentication config')[0]?.message).toContain('3 CEL expressions compiled');
    expect(about(report.checks, 'jwt[0] issuer')[0]).toMatchObject({ status: 'ok' });
    const mapping = about(report.checks, 'identity mapping')[0];
    expect(mapping?.status).toBe('warning');
    expect(mapping?.message).toContain('jwt[0] → user "corp:admin", groups [corp:admins, corp:engineering]');
    expect(mapping?.message).toContain('user "admin@example.com", groups [admins, engineering]');
  });

  it('reports a file that does not compile as a problem naming the rule', async () => {
    const report = await runDoctor({ ...env, AUTHENTICATION_CONFIG: join(dir, 'broken.yaml') });
    const problems = report.checks.filter((c) => c.status === 'problem');
    expect(problems.map((p) => p.message).join('\n')).toContain('jwt[0].claimMappings.username.expression');
  });

  it('maps a token given with --token, beside the current flag settings of a file given with --authentication-config, never printing the token', async () => {
    const token = await dex.mintIdToken({
      sub: dex.subjectOf(dev),
      email: dev.email,
      email_verified: true,
      groups: dev.groups,
    });
    let out = '';
    const status = await doctorCommand(
      ['--authentication-config', join(dir, 'good.yaml'), `--token=${token}`],
      { ...env, OIDC_GROUPS_PREFIX: 'oidc:' },
      { write: (text: string) => (out += text) },
    );
    expect(out).toContain('jwt[0] → user "corp:dev", groups [corp:engineering]');
    expect(out).toContain('user "dev@example.com", groups [oidc:engineering]');
    expect(out).not.toContain(token);
    expect(out).not.toContain(token.split('.')[2]!);
    expect(status).toBe(0);
  });

  it('says a --token would be refused, as a problem', async () => {
    const token = await dex.mintIdToken({ sub: 'x', email: dev.email, email_verified: false, groups: [] });
    const report = await runDoctor({ ...env, AUTHENTICATION_CONFIG: join(dir, 'good.yaml') }, { token });
    expect(about(report.checks, 'identity mapping')[0]).toMatchObject({ status: 'problem' });
    expect(about(report.checks, 'identity mapping')[0]?.message).toContain(
      'refuses it (jwt[0].claimValidationRules[0]',
    );
  });

  it('adds nothing without AUTHENTICATION_CONFIG', async () => {
    const report = await runDoctor(env);
    expect(about(report.checks, 'authentication config')).toEqual([]);
    expect(about(report.checks, 'identity mapping')).toEqual([]);
  });
});
