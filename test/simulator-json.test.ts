/**
 * The Python-faithful JSON layer of the simulator: what ComfyUI reads, it writes back the
 * same way (floats stay floats, big integers stay exact, key order is kept).
 */
import { parseJson, pyFloatRepr, stringify, PyFloat } from '../src/simulator/json';
import { pyFloat, pyInt, pyStr } from '../src/simulator/py';
import { encodePng } from '../src/simulator/png';
import { PNG } from 'pngjs';

describe('json', () => {
  it('round-trips like json.loads + json.dumps', () => {
    const text =
      '{"10": {"seed": 18446744073709551615, "cfg": 8.0, "x": 1e-07, "s": "é\\n"}, "2": [1, 2.5, null, true]}';
    expect(stringify(parseJson(text))).toBe(text.replace('é', '\\u00e9'));
    expect(stringify(parseJson(' [NaN, Infinity, -0, -0.0] '))).toBe('[NaN, Infinity, 0, -0.0]');
    expect(() => parseJson('{"a": 1} x')).toThrow(SyntaxError);
    expect(() => parseJson('')).toThrow(SyntaxError);
  });

  it.each([
    [1, '1.0'],
    [0.1, '0.1'],
    [1e16, '1e+16'],
    [1e15, '1000000000000000.0'],
    [0.0001, '0.0001'],
    [0.00001, '1e-05'],
    [4.76837158203125e-7, '4.76837158203125e-07'],
    [-2.5, '-2.5'],
  ])('repr(%p) == %p', (x, repr) => {
    expect(pyFloatRepr(x)).toBe(repr);
    expect(stringify(new PyFloat(x))).toBe(repr);
  });
});

describe('python conversions', () => {
  it('int(), float(), str() like Python', () => {
    expect(pyInt(' 42 ')).toBe(42);
    expect(pyInt(new PyFloat(3.9))).toBe(3);
    expect(pyInt('18446744073709551616')).toBe(18446744073709551616n);
    expect(() => pyInt('3.5')).toThrow("invalid literal for int() with base 10: '3.5'");
    expect(() => pyInt(null)).toThrow(
      "int() argument must be a string, a bytes-like object or a real number, not 'NoneType'",
    );
    expect(pyFloat('1_000.5').value).toBe(1000.5);
    expect(() => pyFloat('abc')).toThrow("could not convert string to float: 'abc'");
    expect(pyStr({ a: [1, new PyFloat(2), null, true, "it's"] })).toBe(
      `{'a': [1, 2.0, None, True, "it's"]}`,
    );
  });
});

describe('png', () => {
  it('writes a real RGB PNG with tEXt metadata', () => {
    const bytes = encodePng(5, 3, [10, 20, 30], [['prompt', '{"1": {}}']]);
    const png = PNG.sync.read(bytes);
    expect([png.width, png.height]).toEqual([5, 3]);
    expect([...png.data.subarray(0, 4)]).toEqual([10, 20, 30, 255]);
    expect(bytes.includes(Buffer.from('tEXtprompt\u0000{"1": {}}', 'latin1'))).toBe(true);
  });
});
