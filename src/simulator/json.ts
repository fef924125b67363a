/**
 * JSON as Python's `json` module reads and writes it, so the simulator echoes exactly what
 * ComfyUI would:
 * - integers stay integers of any size (`bigint` above 2^53), floats stay floats (`PyFloat`,
 *   so `2.0` is written back as `2.0`, not `2`);
 * - object key order is kept even for integer-like keys (`{"10":…,"2":…}`), which plain JS
 *   objects would reorder;
 * - output uses `json.dumps` defaults: `", "` / `": "` separators and `ensure_ascii`.
 */

/** A Python float. Plain JS numbers in simulator values are Python ints. */
export class PyFloat {
  constructor(readonly value: number) {}
}

export type Json = null | boolean | number | bigint | string | PyFloat | Json[] | JsonObject;
export interface JsonObject {
  [key: string]: Json;
}

/** Key order of objects whose insertion order differs from JS enumeration order. */
const keyOrder = new WeakMap<object, string[]>();

/** An object's keys in insertion (Python) order. */
export function keysOf(obj: object): string[] {
  const own = Object.keys(obj);
  const order = keyOrder.get(obj);
  if (!order) return own;
  const present = new Set(own);
  const ordered = order.filter((k) => present.has(k));
  const seen = new Set(ordered);
  return [...ordered, ...own.filter((k) => !seen.has(k))];
}

export function entriesOf<T>(obj: Record<string, T>): [string, T][] {
  return keysOf(obj).map((k) => [k, obj[k]]);
}

/** Sets a key, keeping insertion order (a new key goes last, like a Python dict). */
export function setKey<T>(obj: Record<string, T>, key: string, value: T): void {
  const existed = Object.hasOwn(obj, key);
  if (key === '__proto__') {
    Object.defineProperty(obj, key, {
      value,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  } else {
    obj[key] = value;
  }
  if (existed) return;
  const order = keyOrder.get(obj);
  if (order) order.push(key);
  else if (Object.keys(obj).at(-1) !== key)
    keyOrder.set(obj, [...Object.keys(obj).filter((k) => k !== key), key]);
}

/** Builds an object from entries in the given order (integer-like keys included). */
export function orderedObject<T>(entries: Iterable<[string, T]>): Record<string, T> {
  const obj: Record<string, T> = {};
  for (const [k, v] of entries) setKey(obj, k, v);
  return obj;
}

export function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof PyFloat);
}

/** A deep copy that keeps key order (Python's `copy.deepcopy` of JSON-like data). */
export function deepCopy<T>(v: T): T {
  if (Array.isArray(v)) return v.map(deepCopy) as T;
  if (isObject(v)) return orderedObject(entriesOf(v).map(([k, x]) => [k, deepCopy(x)])) as T;
  return v;
}

// ---------------------------------------------------------------------------------------------
// Parsing (json.loads: accepts NaN/Infinity like Python, rejects trailing data)

class Parser {
  pos = 0;
  constructor(private readonly s: string) {}

  fail(msg: string): never {
    throw new SyntaxError(`${msg} at position ${this.pos}`);
  }

  ws(): void {
    while (this.pos < this.s.length && ' \t\n\r'.includes(this.s[this.pos])) this.pos++;
  }

  value(): Json {
    this.ws();
    const c = this.s[this.pos];
    if (c === '{') return this.object();
    if (c === '[') return this.array();
    if (c === '"') return this.string();
    for (const [lit, val] of LITERALS) {
      if (this.s.startsWith(lit, this.pos)) {
        this.pos += lit.length;
        return val;
      }
    }
    return this.number();
  }

  object(): JsonObject {
    this.pos++;
    const obj: JsonObject = {};
    this.ws();
    if (this.s[this.pos] === '}') {
      this.pos++;
      return obj;
    }
    for (;;) {
      this.ws();
      if (this.s[this.pos] !== '"') this.fail('Expecting property name enclosed in double quotes');
      const key = this.string();
      this.ws();
      if (this.s[this.pos++] !== ':') this.fail("Expecting ':' delimiter");
      setKey(obj, key, this.value());
      this.ws();
      const c = this.s[this.pos++];
      if (c === '}') return obj;
      if (c !== ',') this.fail("Expecting ',' delimiter");
    }
  }

  array(): Json[] {
    this.pos++;
    const arr: Json[] = [];
    this.ws();
    if (this.s[this.pos] === ']') {
      this.pos++;
      return arr;
    }
    for (;;) {
      arr.push(this.value());
      this.ws();
      const c = this.s[this.pos++];
      if (c === ']') return arr;
      if (c !== ',') this.fail("Expecting ',' delimiter");
    }
  }

  string(): string {
    this.pos++;
    let out = '';
    for (;;) {
      const c = this.s[this.pos++];
      if (c === undefined) this.fail('Unterminated string');
      if (c === '"') return out;
      if (c < ' ') this.fail('Invalid control character');
      if (c !== '\\') {
        out += c;
        continue;
      }
      const e = this.s[this.pos++];
      if (e === 'u') {
        const hex = this.s.slice(this.pos, this.pos + 4);
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) this.fail('Invalid \\uXXXX escape');
        out += String.fromCharCode(parseInt(hex, 16));
        this.pos += 4;
      } else if (e in ESCAPES) {
        out += ESCAPES[e];
      } else {
        this.fail('Invalid \\escape');
      }
    }
  }

  number(): Json {
    NUMBER.lastIndex = this.pos;
    const m = NUMBER.exec(this.s);
    if (!m) this.fail('Expecting value');
    this.pos += m[0].length;
    if (m[2] === undefined && m[3] === undefined) {
      const n = Number(m[1]);
      return Number.isSafeInteger(n) ? (Object.is(n, -0) ? 0 : n) : BigInt(m[1]);
    }
    return new PyFloat(Number(m[0]));
  }
}

const NUMBER = /(-?(?:0|[1-9]\d*))(\.\d+)?([eE][-+]?\d+)?/y;
const LITERALS: [string, Json][] = [
  ['null', null],
  ['true', true],
  ['false', false],
  ['NaN', new PyFloat(NaN)],
  ['Infinity', new PyFloat(Infinity)],
  ['-Infinity', new PyFloat(-Infinity)],
];
const ESCAPES: Record<string, string> = {
  '"': '"',
  '\\': '\\',
  '/': '/',
  b: '\b',
  f: '\f',
  n: '\n',
  r: '\r',
  t: '\t',
};

/** `json.loads`. Throws SyntaxError on invalid input. */
export function parseJson(text: string): Json {
  const p = new Parser(text);
  const v = p.value();
  p.ws();
  if (p.pos !== text.length) p.fail('Extra data');
  return v;
}

/** The raw text of each member value of a top-level JSON object, by key. */
export function rawMembers(text: string): Map<string, string> {
  const p = new Parser(text);
  const out = new Map<string, string>();
  p.ws();
  if (text[p.pos] !== '{') p.fail('Expecting object');
  p.pos++;
  for (;;) {
    p.ws();
    if (text[p.pos] === '}') return out;
    const key = p.string();
    p.ws();
    p.pos++; // ':'
    p.ws();
    const start = p.pos;
    p.value();
    out.set(key, text.slice(start, p.pos));
    p.ws();
    if (text[p.pos] === ',') p.pos++;
  }
}

// ---------------------------------------------------------------------------------------------
// Serializing (json.dumps defaults)

/** Python's `repr(float)`: shortest round-trip digits, `1.0`, `1e-05`, `1e+16`. */
export function pyFloatRepr(x: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Infinity) return 'inf';
  if (x === -Infinity) return '-inf';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const [mant, expText] = x.toExponential().split('e');
  const exp = Number(expText);
  const sign = mant.startsWith('-') ? '-' : '';
  const digits = mant.replace('-', '').replace('.', '');
  if (exp < -4 || exp >= 16) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    return `${sign}${m}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
  }
  if (exp < 0) return `${sign}0.${'0'.repeat(-exp - 1)}${digits}`;
  const int = digits.slice(0, exp + 1).padEnd(exp + 1, '0');
  const frac = digits.slice(exp + 1) || '0';
  return `${sign}${int}.${frac}`;
}

function jsonFloat(x: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Infinity) return 'Infinity';
  if (x === -Infinity) return '-Infinity';
  return pyFloatRepr(x);
}

function jsonString(s: string): string {
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    const code = s.charCodeAt(i);
    if (c === '"') out += '\\"';
    else if (c === '\\') out += '\\\\';
    else if (c === '\n') out += '\\n';
    else if (c === '\r') out += '\\r';
    else if (c === '\t') out += '\\t';
    else if (c === '\b') out += '\\b';
    else if (c === '\f') out += '\\f';
    else if (code < 0x20 || code > 0x7e) out += `\\u${code.toString(16).padStart(4, '0')}`;
    else out += c;
  }
  return out + '"';
}

/** `json.dumps(value)`: Python spacing, ensure_ascii, floats as floats, big ints exact. */
export function stringify(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (value === true) return 'true';
  if (value === false) return 'false';
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'number') return Number.isInteger(value) ? String(value) : jsonFloat(value);
  if (value instanceof PyFloat) return jsonFloat(value.value);
  if (typeof value === 'string') return jsonString(value);
  if (Array.isArray(value)) return `[${value.map(stringify).join(', ')}]`;
  if (typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    return `{${keysOf(obj)
      .map((k) => `${jsonString(k)}: ${stringify(obj[k])}`)
      .join(', ')}}`;
  }
  return jsonString(String(value));
}
