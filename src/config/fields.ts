import { z } from 'zod';

// The kinds of environment variable the config reads (src/config/index.ts), parsed by zod.

/** An integer of at least `min` (0 or 1); unset or empty is the default. */
const integer = (name: string, def: number, min: 0 | 1) =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v.trim() === '') return def;
      const n = Number(v);
      if (!Number.isInteger(n) || n < min) {
        const kind = min === 1 ? 'positive' : 'non-negative';
        ctx.addIssue({ code: 'custom', message: `${name} must be a ${kind} integer, got "${v}"` });
        return z.NEVER;
      }
      return n;
    });

export const positiveInt = (name: string, def: number) => integer(name, def, 1);
export const nonNegativeInt = (name: string, def: number) => integer(name, def, 0);

/** 1/true or 0/false; unset or empty is the default; anything else is a clear error. */
export const flag = (name: string, def: boolean) =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v.trim() === '') return def;
      if (v === '1' || v === 'true') return true;
      if (v === '0' || v === 'false') return false;
      ctx.addIssue({ code: 'custom', message: `${name} must be 0 or 1, got "${v}"` });
      return z.NEVER;
    });

export const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v.trim()));

export const list = (name: string) =>
  z
    .string()
    .optional()
    .transform((v) =>
      (v ?? '')
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s.length > 0),
    )
    .describe(name);

export const urlList = (name: string, def: string) =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      const items = (v && v.trim() !== '' ? v : def)
        .split(',')
        .map((s) => s.trim().replace(/\/+$/, ''))
        .filter((s) => s.length > 0);
      for (const item of items) {
        let ok = false;
        try {
          ok = ['http:', 'https:'].includes(new URL(item).protocol);
        } catch {
          ok = false;
        }
        if (!ok) {
          ctx.addIssue({
            code: 'custom',
            message: `${name} must be one or more comma-separated http(s) URLs, got "${item}"`,
          });
          return z.NEVER;
        }
      }
      return items;
    });
