import { sealData, unsealData } from 'iron-session';
import { describe, expect, it } from 'vitest';
import { decrypt, deriveSessionKeys, encrypt, newSessionId } from '../../src/session/crypto.ts';
import { unsealIron } from '../../src/session/iron.ts';
import { Sealer } from '../../src/session/seal.ts';

describe('session crypto', () => {
  it('derives different lookup and encryption keys per session, never the sid itself', () => {
    const sid = newSessionId();
    const a = deriveSessionKeys(sid);
    const b = deriveSessionKeys(newSessionId());
    expect(a.lookup).not.toBe(b.lookup);
    expect(a.lookup).not.toContain(sid);
    expect(deriveSessionKeys(sid).lookup).toBe(a.lookup);
  });

  it('encrypts so that only the right key and store key decrypt', () => {
    const a = deriveSessionKeys(newSessionId());
    const b = deriveSessionKeys(newSessionId());
    const sealed = encrypt('{"idToken":"secret-token"}', a.encryption, a.lookup);
    expect(sealed).not.toContain('secret-token');
    expect(decrypt(sealed, a.encryption, a.lookup)).toBe('{"idToken":"secret-token"}');
    expect(decrypt(sealed, b.encryption, a.lookup)).toBeUndefined();
    expect(decrypt(sealed, a.encryption, b.lookup)).toBeUndefined();
    const tampered = sealed.slice(0, -3) + (sealed.endsWith('A') ? 'BBB' : 'AAA');
    expect(decrypt(tampered, a.encryption, a.lookup)).toBeUndefined();
    expect(decrypt('garbage', a.encryption, a.lookup)).toBeUndefined();
  });
});

describe('sealed cookies', () => {
  const s1 = { id: 'one', secret: '1'.repeat(32) };
  const s2 = { id: 'two', secret: '2'.repeat(32) };

  it('round-trips and rejects tampering, truncation and foreign secrets', async () => {
    const sealer = new Sealer([s1]);
    const value = await sealer.seal({ sid: 'abc', rt: 'r' }, 60);
    expect(await sealer.unseal(value)).toEqual({ sid: 'abc', rt: 'r' });
    expect(await sealer.unseal(value.slice(0, -5))).toBeUndefined();
    expect(await sealer.unseal(`${value.slice(0, 60)}x${value.slice(61)}`)).toBeUndefined();
    expect(await new Sealer([s2]).unseal(value)).toBeUndefined();
    expect(await sealer.unseal('not-a-seal')).toBeUndefined();
  });

  it('seals with the first secret and unseals with all of them (rotation)', async () => {
    const old = new Sealer([s1]);
    const rotated = new Sealer([s2, s1]);
    const oldValue = await old.seal({ x: 1 }, 60);
    expect(await rotated.unseal(oldValue)).toEqual({ x: 1 });
    expect(rotated.isSealedWithOldSecret(oldValue)).toBe(true);
    const newValue = await rotated.seal({ x: 2 }, 60);
    expect(rotated.isSealedWithOldSecret(newValue)).toBe(false);
    expect(await old.unseal(newValue)).toBeUndefined();
  });
});

describe('reading seals without WebCrypto (issue 15: the cold path)', () => {
  const secret = { id: '7', secret: 'k'.repeat(40) };
  const passwords = new Map([['7', secret.secret]]);

  /** Splits a seal's components (the `~2` suffix removed) and joins them again after `change`. */
  const altered = (value: string, change: (parts: string[]) => void): string => {
    const parts = value.slice(0, -2).split('*');
    change(parts);
    return `${parts.join('*')}~2`;
  };

  it('reads what iron-session seals and writes what it reads, with every secret of the list, and nothing else', async () => {
    const value = await sealData(
      { sid: 'abc', n: 1, nested: { a: [1, 2] } },
      { password: { 7: secret.secret }, ttl: 60 },
    );
    const sealer = new Sealer([{ id: '9', secret: 'z'.repeat(40) }, secret]);
    expect(sealer.unsealNow(value)).toEqual({ sid: 'abc', n: 1, nested: { a: [1, 2] } });
    expect(
      await unsealData(await sealer.seal({ back: true }, 60), { password: { 9: 'z'.repeat(40) } }),
    ).toEqual({
      back: true,
    });
    expect(new Sealer([{ id: '7', secret: 'q'.repeat(40) }]).unsealNow(value)).toBeUndefined();
    // Ours expire as iron-session's do: iron-session refuses ours past their ttl (and its skew).
    const shortLived = await new Sealer([secret]).seal({ x: 1 }, 1);
    const [, , , , , expiration] = shortLived.slice(0, -2).split('*');
    expect(Number(expiration) - Date.now()).toBeGreaterThan(0);
    expect(Number(expiration) - Date.now()).toBeLessThanOrEqual(1_000);
    expect(await unsealData(shortLived, { password: { 7: secret.secret } })).toEqual({ x: 1 });
  });

  it('refuses a seal whose integrity check fails before decrypting it, however it was altered', async () => {
    const value = await sealData({ sid: 'abc' }, { password: { 7: secret.secret }, ttl: 60 });
    const sealer = new Sealer([secret]);
    const last = (s: string) => (s.endsWith('A') ? 'B' : 'A');
    // Another spelling of the same HMAC bytes (base64url's spare bits) is another cookie value.
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const respelled = altered(value, (p) => {
      const h = p[7] as string;
      p[7] = h.slice(0, -1) + alphabet[alphabet.indexOf(h.at(-1) as string) + 1];
    });
    expect(Buffer.from(respelled.slice(0, -2).split('*')[7] as string, 'base64url')).toEqual(
      Buffer.from(value.slice(0, -2).split('*')[7] as string, 'base64url'),
    );
    const cases = [
      altered(value, (p) => (p[4] = `${(p[4] as string).slice(0, -1)}${last(p[4] as string)}`)),
      altered(value, (p) => (p[3] = `${(p[3] as string).slice(0, -1)}${last(p[3] as string)}`)),
      altered(value, (p) => (p[5] = String(Number(p[5]) + 1))),
      altered(value, (p) => (p[1] = '8')),
      altered(value, (p) => (p[1] = '__proto__')),
      altered(value, (p) => (p[1] = 'constructor')),
      altered(value, (p) => p.pop()),
      respelled,
    ];
    for (const bad of cases) {
      expect(unsealIron(bad.slice(0, -2), passwords, Date.now())).toBeUndefined();
      expect(sealer.unsealNow(bad)).toBeUndefined();
    }
  });

  it('refuses a seal past its expiry (beyond iron’s 60 s of clock skew)', async () => {
    const value = await sealData({ sid: 'abc' }, { password: { 7: secret.secret }, ttl: 1 });
    const sealer = new Sealer([secret]);
    expect(sealer.unsealNow(value, Date.now() + 30_000)).toEqual({ sid: 'abc' });
    expect(sealer.unsealNow(value, Date.now() + 62_000)).toBeUndefined();
  });

  it('seals and unseals without WebCrypto (no thread-pool round trips per cookie)', async () => {
    const sealer = new Sealer([secret]);
    const subtle = globalThis.crypto.subtle;
    const calls: string[] = [];
    const spies = (['importKey', 'deriveBits', 'sign', 'encrypt', 'decrypt'] as const).map((name) => {
      const original = subtle[name].bind(subtle) as (...a: unknown[]) => unknown;
      const own = subtle as unknown as Record<string, unknown>;
      own[name] = (...a: unknown[]) => {
        calls.push(name);
        return original(...a);
      };
      return () => {
        delete own[name];
      };
    });
    try {
      expect(await sealer.unseal(await sealer.seal({ sid: 'abc' }, 60))).toEqual({ sid: 'abc' });
    } finally {
      for (const restore of spies) restore();
    }
    expect(calls).toEqual([]);
  });
});
