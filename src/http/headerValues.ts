/**
 * Header values built from the identity provider's data (user names, emails, groups), which may
 * hold any Unicode, commas and control characters (DESIGN §10). Node refuses to write a header
 * value with a character above U+00FF or a control character (it throws), and a comma inside one
 * group would split it in two for every reader of a comma-separated list. Two encodings:
 *
 * - `encodeHeaderText` (X-Auth-Request-*, X-Forwarded-User/Email/Groups): percent-encoding of the
 *   UTF-8 bytes of every character outside printable ASCII, of `%` and `,`, and of a space at
 *   either end (HTTP trims those). Plain ASCII names without `%` or `,` pass unchanged; any value
 *   decodes back exactly with `decodeURIComponent` (after splitting a list on commas).
 * - `rawHeaderBytes` (Impersonate-*): the API server takes these values byte for byte, so they are
 *   sent as their UTF-8 bytes (obs-text, which Node, Traefik, nginx and Go all carry). A value
 *   with a control character or whitespace at either end cannot be carried that way: undefined.
 */

const NEEDS_ENCODING = /[^\x20-\x7e]|[%,]|^ | $/;
const UNSAFE_RAW = /[\u0000-\u001f\u007f]|^\s|\s$/;
/** What Node's setHeader accepts (lib/_http_common.js checkInvalidHeaderChar). */
const INVALID_FOR_NODE = /[^\t\x20-\x7e\x80-\xff]/;

function percentEncode(char: string): string {
  let out = '';
  for (const byte of Buffer.from(char, 'utf8')) out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  return out;
}

/** Percent-encodes what a header or a comma-separated list cannot carry; ASCII names stay as they are. */
export function encodeHeaderText(value: string): string {
  if (!NEEDS_ENCODING.test(value)) return value;
  let out = '';
  const last = value.length - 1;
  for (let i = 0; i <= last; i++) {
    const code = value.charCodeAt(i);
    if (code >= 0x21 && code <= 0x7e && code !== 0x25 && code !== 0x2c) {
      out += value[i];
    } else if (code === 0x20 && i !== 0 && i !== last) {
      out += ' ';
    } else if (code >= 0xd800 && code <= 0xdbff && i < last) {
      // A surrogate pair is one character: encode its four UTF-8 bytes together.
      const next = value.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        out += percentEncode(value.slice(i, i + 2));
        i++;
      } else {
        out += percentEncode(value[i] as string);
      }
    } else {
      out += percentEncode(value[i] as string);
    }
  }
  return out;
}

/** The value's UTF-8 bytes as a latin1 string (what the wire will carry), or undefined when it cannot be sent raw. */
export function rawHeaderBytes(value: string): string | undefined {
  if (UNSAFE_RAW.test(value)) return undefined;
  return /[^\x00-\x7f]/.test(value) ? Buffer.from(value, 'utf8').toString('latin1') : value;
}

/** Whether Node would write this value as it is. */
export function isWritableHeaderValue(value: string): boolean {
  return !INVALID_FOR_NODE.test(value);
}
