import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { isNavigation } from '../../src/forward/navigation.ts';
import { type OriginalRequest, readOriginalRequest } from '../../src/forward/original.ts';
import { ReturnUrlGuard } from '../../src/forward/returnUrl.ts';
import { ProxyTrust } from '../../src/forward/trust.ts';

const trust = new ProxyTrust(['127.0.0.0/8', '10.0.0.0/8']);

function req(
  headers: Record<string, string>,
  remoteAddress = '127.0.0.1',
  url = '/auth',
  method = 'GET',
): IncomingMessage {
  return { headers, method, url, socket: { remoteAddress } } as unknown as IncomingMessage;
}

describe('reading the original request', () => {
  it('takes method, proto, host and uri from a trusted proxy', () => {
    const o = readOriginalRequest(
      req({
        host: 'auth:4180',
        'x-forwarded-method': 'POST',
        'x-forwarded-proto': 'https',
        'x-forwarded-host': 'Grafana.Example.com',
        'x-forwarded-uri': '/d/abc?orgId=1',
        'x-forwarded-for': '203.0.113.7, 10.1.2.3',
      }),
      trust,
      '/',
    );
    expect(o).toMatchObject({
      method: 'POST',
      proto: 'https',
      host: 'grafana.example.com',
      uri: '/d/abc?orgId=1',
      path: '/d/abc',
      url: 'https://grafana.example.com/d/abc?orgId=1',
      clientIp: '203.0.113.7',
      forwarded: true,
    });
  });

  it('ignores X-Forwarded-* from an untrusted peer', () => {
    const o = readOriginalRequest(
      req(
        { host: 'svc:4180', 'x-forwarded-host': 'evil.example', 'x-forwarded-for': '1.2.3.4' },
        '198.51.100.9',
        '/x',
      ),
      trust,
    );
    expect(o.host).toBe('svc:4180');
    expect(o.clientIp).toBe('198.51.100.9');
    expect(o.forwarded).toBe(false);
  });

  it('drops the default port and maps ws/wss', () => {
    const o = readOriginalRequest(
      req({ 'x-forwarded-proto': 'wss', 'x-forwarded-host': 'app.example.com:443', 'x-forwarded-uri': '/' }),
      trust,
    );
    expect(o.proto).toBe('https');
    expect(o.host).toBe('app.example.com');
  });

  it.each([
    ['a CRLF in the host', { 'x-forwarded-host': 'a.example.com\r\nSet-Cookie: x=1' }],
    ['a space in the uri', { 'x-forwarded-host': 'a.example.com', 'x-forwarded-uri': '/a b' }],
    ['a relative uri', { 'x-forwarded-host': 'a.example.com', 'x-forwarded-uri': 'http://evil/' }],
    ['an odd proto', { 'x-forwarded-host': 'a.example.com', 'x-forwarded-proto': 'javascript' }],
    ['a userinfo host', { 'x-forwarded-host': 'user@a.example.com' }],
    ['a bad method', { 'x-forwarded-host': 'a.example.com', 'x-forwarded-method': 'G E T' }],
  ])('rejects %s with a 400', (_name, headers) => {
    expect(() => readOriginalRequest(req(headers), trust, '/')).toThrowError(
      expect.objectContaining({ status: 400 }),
    );
  });
});

describe('navigation detection', () => {
  const nav = {
    accept: 'text/html,application/xhtml+xml',
    'sec-fetch-mode': 'navigate',
    'sec-fetch-dest': 'document',
  };
  it('treats a top-level document GET as a navigation', () => {
    expect(isNavigation('GET', nav)).toBe(true);
    expect(isNavigation('HEAD', { accept: 'text/html' })).toBe(true);
  });
  it.each([
    ['XHR', 'GET', { ...nav, 'x-requested-with': 'XMLHttpRequest' }],
    ['fetch()', 'GET', { ...nav, 'sec-fetch-mode': 'cors' }],
    ['an image', 'GET', { accept: 'image/avif,image/webp,*/*', 'sec-fetch-dest': 'image' }],
    ['a favicon without fetch metadata', 'GET', { accept: 'image/*' }],
    ['a POST', 'POST', nav],
    ['an iframe', 'GET', { ...nav, 'sec-fetch-dest': 'iframe' }],
    ['a JSON API call', 'GET', { accept: 'application/json' }],
  ])('does not treat %s as a navigation', (_n, method, headers) => {
    expect(isNavigation(method, headers)).toBe(false);
  });
});

describe('return URL guard', () => {
  const original = { proto: 'https', host: 'app.example.com' } as OriginalRequest;
  const guard = new ReturnUrlGuard(['.example.com', 'dash.other.org']);
  const ownOnly = new ReturnUrlGuard([]);

  it.each([
    ['/path?x=1', 'https://app.example.com/path?x=1'],
    ['https://grafana.example.com/d/1', 'https://grafana.example.com/d/1'],
    ['https://example.com/', 'https://example.com/'],
    ['http://dash.other.org/x', 'http://dash.other.org/x'],
  ])('allows %s', (candidate, expected) => {
    expect(guard.check(candidate, original)).toBe(expected);
  });

  it.each([
    '//evil.com/',
    '/\\evil.com',
    '/\\/evil.com',
    'https://evil.com/',
    'https://example.com.evil.com/',
    'https://evilexample.com/',
    'https://app.example.com@evil.com/',
    'https://user:pw@app.example.com/',
    'javascript:alert(1)',
    'data:text/html,x',
    'https://evil.com%2f@app.example.com/',
    'https://evil.com%2Eapp.example.com/',
    'https://app\u3002example.com/',
    '/ok\r\nSet-Cookie:x=1',
    ' https://app.example.com/',
    'https:/\\evil.com',
    'ftp://app.example.com/',
    '',
  ])('refuses %j', (candidate) => {
    expect(guard.check(candidate, original)).toBeUndefined();
  });

  it('defaults to the request’s own host only', () => {
    expect(ownOnly.check('https://app.example.com/x', original)).toBe('https://app.example.com/x');
    expect(ownOnly.check('https://grafana.example.com/', original)).toBeUndefined();
  });
});
