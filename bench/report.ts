/** The printed table: one line per row, columns sized to their content. */
import { fmt, type Row } from './lib';

export function formatTable(rows: Row[]): string {
  const header = ['figure', 'measured', 'baseline (same run)', 'ratio', 'target', 'met'];
  const cells = rows.map((r) => [
    r.figure,
    r.value,
    r.baseline ?? '—',
    r.ratio === undefined ? '—' : `${fmt(r.ratio, 2)}×`,
    r.target,
    r.met === undefined ? '' : r.met ? 'yes' : 'NO',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]) =>
    c
      .map((s, i) => s.padEnd(widths[i]))
      .join(' | ')
      .trimEnd();
  const notes = rows.filter((r) => r.note).map((r) => `  ${r.id}: ${r.note}`);
  return [
    line(header),
    widths.map((w) => '-'.repeat(w)).join('-|-'),
    ...cells.map(line),
    ...(notes.length > 0 ? ['', 'notes:', ...notes] : []),
  ].join('\n');
}
