/**
 * The few Python semantics ComfyUI's request handling relies on (`in`, `[]`, `int()`,
 * `float()`, `str()`, truthiness, `==`), applied to JSON values, so that odd request bodies
 * fail (or pass) the way they do on the real server.
 */
import { isObject, keysOf, pyFloatRepr, PyFloat, type Json } from './json';

/** A Python exception: `pyType` is the class name as ComfyUI reports it (`KeyError`, …). */
export class PyError extends Error {
  constructor(
    readonly pyType: string,
    message: string,
    readonly traceback: string[] = [],
  ) {
    super(message);
    this.name = 'PyError';
  }
}

export function pyTypeName(v: unknown): string {
  if (v === null || v === undefined) return 'NoneType';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'number' || typeof v === 'bigint') return 'int';
  if (v instanceof PyFloat) return 'float';
  if (typeof v === 'string') return 'str';
  if (Array.isArray(v)) return 'list';
  if (isObject(v)) return 'dict';
  return 'object';
}

function reprString(s: string): string {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of s) {
    const code = ch.codePointAt(0)!;
    if (ch === '\\') out += '\\\\';
    else if (ch === quote) out += `\\${quote}`;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (code < 0x20 || (code >= 0x7f && code < 0xa0))
      out += `\\x${code.toString(16).padStart(2, '0')}`;
    else out += ch;
  }
  return out + quote;
}

/** Python's `repr()` of a JSON-like value. */
export function pyRepr(v: unknown): string {
  if (typeof v === 'string') return reprString(v);
  if (Array.isArray(v)) return `[${v.map(pyRepr).join(', ')}]`;
  if (isObject(v)) {
    return `{${keysOf(v)
      .map((k) => `${reprString(k)}: ${pyRepr(v[k])}`)
      .join(', ')}}`;
  }
  return pyStr(v);
}

/** Python's `str()` of a JSON-like value. */
export function pyStr(v: unknown): string {
  if (v === null || v === undefined) return 'None';
  if (v === true) return 'True';
  if (v === false) return 'False';
  if (typeof v === 'string') return v;
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : pyFloatRepr(v);
  if (v instanceof PyFloat) return pyFloatRepr(v.value);
  if (Array.isArray(v) || isObject(v)) return pyRepr(v);
  return String(v);
}

export function pyTruthy(v: unknown): boolean {
  if (v === null || v === undefined || v === false || v === 0 || v === 0n || v === '') return false;
  if (v instanceof PyFloat) return v.value !== 0;
  if (Array.isArray(v)) return v.length > 0;
  if (isObject(v)) return keysOf(v).length > 0;
  return true;
}

/** The numeric value of a Python int/float/bool, or undefined for anything else. */
export function pyNumber(v: unknown): number | bigint | undefined {
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (typeof v === 'number' || typeof v === 'bigint') return v;
  if (v instanceof PyFloat) return v.value;
  return undefined;
}

export function pyEquals(a: unknown, b: unknown): boolean {
  const na = pyNumber(a);
  const nb = pyNumber(b);
  if (na !== undefined || nb !== undefined) return na !== undefined && nb !== undefined && na == nb;
  if (Array.isArray(a) || Array.isArray(b)) {
    return (
      Array.isArray(a) &&
      Array.isArray(b) &&
      a.length === b.length &&
      a.every((x, i) => pyEquals(x, b[i]))
    );
  }
  if (isObject(a) || isObject(b)) {
    if (!isObject(a) || !isObject(b)) return false;
    const ka = keysOf(a);
    return (
      ka.length === keysOf(b).length && ka.every((k) => Object.hasOwn(b, k) && pyEquals(a[k], b[k]))
    );
  }
  return a === b;
}

/** `a < b` for numbers and strings; TypeError otherwise. */
export function pyLess(a: unknown, b: unknown): boolean {
  const na = pyNumber(a);
  const nb = pyNumber(b);
  if (na !== undefined && nb !== undefined) return na < nb;
  if (typeof a === 'string' && typeof b === 'string') return a < b;
  throw new PyError(
    'TypeError',
    `'<' not supported between instances of '${pyTypeName(a)}' and '${pyTypeName(b)}'`,
  );
}

function unhashable(key: unknown): void {
  if (Array.isArray(key) || isObject(key)) {
    throw new PyError('TypeError', `unhashable type: '${pyTypeName(key)}'`);
  }
}

/** `key in container`. */
export function pyContains(container: unknown, key: unknown): boolean {
  if (isObject(container)) {
    unhashable(key);
    return typeof key === 'string' && Object.hasOwn(container, key);
  }
  if (Array.isArray(container)) return container.some((x) => pyEquals(x, key));
  if (typeof container === 'string') {
    if (typeof key !== 'string') {
      throw new PyError(
        'TypeError',
        `'in <string>' requires string as left operand, not ${pyTypeName(key)}`,
      );
    }
    return container.includes(key);
  }
  throw new PyError('TypeError', `argument of type '${pyTypeName(container)}' is not iterable`);
}

/** `container[key]`. */
export function pyGetItem(container: unknown, key: unknown): Json {
  if (isObject(container)) {
    unhashable(key);
    if (typeof key === 'string' && Object.hasOwn(container, key)) return container[key];
    throw new PyError('KeyError', pyRepr(key));
  }
  if (Array.isArray(container) || typeof container === 'string') {
    const what = Array.isArray(container) ? 'list' : 'string';
    const n = pyNumber(key);
    if (n === undefined || key instanceof PyFloat) {
      throw new PyError(
        'TypeError',
        `${what} indices must be integers or slices, not ${pyTypeName(key)}`,
      );
    }
    const i = Number(n) < 0 ? container.length + Number(n) : Number(n);
    if (i < 0 || i >= container.length)
      throw new PyError('IndexError', `${what} index out of range`);
    return container[i];
  }
  throw new PyError('TypeError', `'${pyTypeName(container)}' object is not subscriptable`);
}

/** `for x in v`: list items, string characters or dict keys. */
export function pyIter(v: unknown): Json[] {
  if (Array.isArray(v)) return v;
  if (typeof v === 'string') return Array.from(v);
  if (isObject(v)) return keysOf(v);
  throw new PyError('TypeError', `'${pyTypeName(v)}' object is not iterable`);
}

function intOrBig(b: bigint): number | bigint {
  return b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER)
    ? Number(b)
    : b;
}

/** Python's `int(v)`. */
export function pyInt(v: unknown): number | bigint {
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (typeof v === 'number' || typeof v === 'bigint') return v;
  if (v instanceof PyFloat) {
    if (Number.isNaN(v.value))
      throw new PyError('ValueError', 'cannot convert float NaN to integer');
    if (!Number.isFinite(v.value))
      throw new PyError('OverflowError', 'cannot convert float infinity to integer');
    return intOrBig(BigInt(Math.trunc(v.value)));
  }
  if (typeof v === 'string') {
    const s = v.trim();
    if (/^[+-]?\d+(_\d+)*$/.test(s)) return intOrBig(BigInt(s.replace(/_/g, '')));
    throw new PyError('ValueError', `invalid literal for int() with base 10: ${pyRepr(v)}`);
  }
  throw new PyError(
    'TypeError',
    `int() argument must be a string, a bytes-like object or a real number, not '${pyTypeName(v)}'`,
  );
}

const FLOAT_TEXT =
  /^[+-]?(?:(?:\d(?:_?\d)*)?(?:\.\d(?:_?\d)*)?|\d(?:_?\d)*\.)(?:[eE][+-]?\d(?:_?\d)*)?$/;

/** Python's `float(v)`. */
export function pyFloat(v: unknown): PyFloat {
  if (v instanceof PyFloat) return v;
  if (typeof v === 'boolean') return new PyFloat(v ? 1 : 0);
  if (typeof v === 'number') return new PyFloat(v);
  if (typeof v === 'bigint') {
    const f = Number(v);
    if (!Number.isFinite(f))
      throw new PyError('OverflowError', 'int too large to convert to float');
    return new PyFloat(f);
  }
  if (typeof v === 'string') {
    const s = v.trim();
    const special = /^([+-]?)(inf|infinity|nan)$/i.exec(s);
    if (special) {
      const sign = special[1] === '-' ? -1 : 1;
      return new PyFloat(special[2].toLowerCase() === 'nan' ? NaN : sign * Infinity);
    }
    if (FLOAT_TEXT.test(s) && /\d/.test(s)) return new PyFloat(Number(s.replace(/_/g, '')));
    throw new PyError('ValueError', `could not convert string to float: ${pyRepr(v)}`);
  }
  throw new PyError(
    'TypeError',
    `float() argument must be a string or a real number, not '${pyTypeName(v)}'`,
  );
}
