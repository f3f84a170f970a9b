import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { README_PATH, renderSettingsTable, updateReadme } from '../../scripts/settings-doc.ts';
import { SECRET_SETTINGS, SETTING_NAMES, SETTINGS } from '../../src/config.ts';

describe('the settings table', () => {
  it('README.md carries exactly the table generated from src/config.ts (run `npm run docs:settings`)', () => {
    const readme = readFileSync(README_PATH, 'utf8');
    expect(updateReadme(readme)).toBe(readme);
  });

  it('lists every setting the service reads, once, with a default and a description', () => {
    const names = SETTINGS.map((s) => s.name);
    expect(new Set(names).size).toBe(names.length);
    expect([...SETTING_NAMES]).toEqual(names);
    for (const s of SETTINGS) {
      expect(s.name).toMatch(/^[A-Z][A-Z0-9_]*$/);
      expect(s.default.trim(), s.name).not.toBe('');
      expect(s.description.trim(), s.name).not.toBe('');
    }
    const table = renderSettingsTable();
    for (const name of names) expect(table).toContain(`| \`${name}\` `);
  });

  it('marks the secrets, which are the ones redacted from problems', () => {
    expect([...SECRET_SETTINGS].sort()).toEqual(
      expect.arrayContaining(['COOKIE_SECRET', 'COOKIE_SECRETS', 'OIDC_CLIENT_SECRET', 'REDIS_PASSWORD']),
    );
    expect(renderSettingsTable()).toMatch(/^\| `COOKIE_SECRET` \(secret\) +\| required /m);
  });

  it('a README whose table lacks a setting is reported as out of date', () => {
    const readme = readFileSync(README_PATH, 'utf8');
    const stale = readme.replace(/^\| `LOG_LEVEL`.*\n/m, '');
    expect(stale).not.toBe(readme);
    expect(updateReadme(stale)).toBe(readme);
    expect(updateReadme(stale)).not.toBe(stale);
  });

  it('escapes pipes so a description cannot break the table', () => {
    const table = renderSettingsTable([{ name: 'X', default: 'a|b', description: 'c|d' }]);
    expect(table.split('\n')[2]).toMatch(/^\| `X` +\| a\\\|b +\| c\\\|d +\|$/);
  });
});
