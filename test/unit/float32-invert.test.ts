/**
 * ComfyUI's arithmetic for LoadImage → ImageInvert → SaveImage, value by value: float32
 * `v / 255`, float32 `1.0 - x`, then `clip(255. * x, 0, 255).astype(uint8)` (truncation).
 * On ComfyUI 0.3.64, 159 of the 256 byte values come back as 254 − v instead of 255 − v (the
 * same list as numpy computes: `np.clip(255. * (1.0 - v.astype(np.float32) / 255.0), 0, 255)`).
 */
import { toByte } from '../../src/simulator/values';

const load = (v: number) => Math.fround(v / 255);
const invert = (x: number) => Math.fround(1 - x);

describe('float32 invert of every byte value', () => {
  const out = Array.from({ length: 256 }, (_, v) => toByte(invert(load(v))));

  it('gives 254 − v for 159 values and 255 − v for the other 97', () => {
    const low = out.filter((b, v) => b === 254 - v).length;
    const exact = out.filter((b, v) => b === 255 - v).length;
    expect(low).toBe(159);
    expect(exact).toBe(97);
  });

  it('keeps the ends exact (0 ↔ 255) and truncates instead of rounding', () => {
    expect(out[0]).toBe(255);
    expect(out[255]).toBe(0);
    // 65: 255 · (1 − 65/255) is 189.99998… in float32, and truncation makes it 189.
    expect(Math.fround(255 * invert(load(65)))).toBe(189.99998474121094);
    expect(out[65]).toBe(189);
    expect(out[64]).toBe(191);
  });

  it('saves a value read back unchanged (no invert) as the same byte', () => {
    for (let v = 0; v < 256; v++) expect(toByte(load(v))).toBe(v);
  });
});
