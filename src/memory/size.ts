/**
 * An estimate of the heap bytes a cached value keeps alive, for the byte budget (budget.ts). It
 * walks plain data — strings, numbers, arrays, objects, Buffers — as V8 lays it out on 64-bit:
 * a string is a 16-byte header plus one byte per Latin-1 character (two otherwise), an object a
 * header plus 8 bytes per property, an array 16 bytes plus 8 per slot. Shared values are counted
 * each time they are reached; cycles end at `depth`. Not exact, and never meant to be: close
 * enough that a budget of N bytes holds about N bytes.
 */

const NON_LATIN1 = /[^\u0000-\u00ff]/;

export function stringBytes(value: string): number {
  // Long strings are usually one-byte (tokens, base64): test only the short ones' characters.
  const wide = value.length <= 256 ? NON_LATIN1.test(value) : false;
  return 16 + (wide ? value.length * 2 : value.length);
}

/**
 * A copy of `value` that keeps nothing else alive. V8 makes a slice of 13 or more characters a
 * view into the string it was cut from: a tag cut from an encrypted blob, or a cookie value cut
 * from a Cookie header, would keep the whole blob or header in memory for as long as it is cached
 * (and the budget would count only the slice). For values that are kept, never per request.
 */
export function detached(value: string): string {
  return value.length < 13 ? value : (JSON.parse(JSON.stringify(value)) as string);
}

export function estimateBytes(value: unknown, depth = 6): number {
  switch (typeof value) {
    case 'string':
      return stringBytes(value);
    case 'number':
      return Number.isInteger(value) && Math.abs(value) < 2 ** 30 ? 0 : 16;
    case 'boolean':
    case 'undefined':
    case 'symbol':
    case 'function':
      return 0;
    case 'bigint':
      return 24;
    default:
      break;
  }
  if (value === null || depth <= 0) return 0;
  if (ArrayBuffer.isView(value)) return 96 + value.byteLength;
  if (Array.isArray(value)) {
    let bytes = 16 + 8 * value.length;
    for (const item of value) bytes += estimateBytes(item, depth - 1);
    return bytes;
  }
  if (value instanceof Map) {
    let bytes = 64 + 24 * value.size;
    for (const [k, v] of value) bytes += estimateBytes(k, depth - 1) + estimateBytes(v, depth - 1);
    return bytes;
  }
  let bytes = 24;
  for (const key in value as Record<string, unknown>) {
    bytes += 8 + estimateBytes((value as Record<string, unknown>)[key], depth - 1);
  }
  return bytes;
}
