import { describe, expect, it } from 'vitest';
import { decrypt, deriveSessionKeys, encrypt, newSessionId } from '../../src/session/crypto.ts';
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
