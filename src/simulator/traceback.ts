/**
 * Python-style diagnostics for errors the simulator reports: traceback frames and the
 * `str()` of the tensors and objects that appear in `execution_error.current_inputs`.
 */
import { PyFloat } from './json';
import { pyRepr } from './py';

/** Where the pretend ComfyUI lives, as printed in tracebacks. */
export const COMFYUI_DIR = '/opt/ComfyUI';

const EXECUTE_FRAMES = [
  `  File "${COMFYUI_DIR}/execution.py", line 496, in execute\n    output_data, output_ui, has_subgraph, has_pending_tasks = await get_output_data(prompt_id, unique_id, obj, input_data_all, execution_block_cb=execution_block_cb, pre_execute_cb=pre_execute_cb, hidden_inputs=hidden_inputs)\n`,
  `  File "${COMFYUI_DIR}/execution.py", line 315, in get_output_data\n    return_values = await _async_map_node_over_list(prompt_id, unique_id, obj, input_data_all, obj.FUNCTION, allow_interrupt=True, execution_block_cb=execution_block_cb, pre_execute_cb=pre_execute_cb, hidden_inputs=hidden_inputs)\n`,
  `  File "${COMFYUI_DIR}/execution.py", line 289, in _async_map_node_over_list\n    await process_inputs(input_dict, i)\n`,
  `  File "${COMFYUI_DIR}/execution.py", line 277, in process_inputs\n    result = f(**inputs)\n`,
];

/** The traceback of an exception raised inside a node function. */
export function nodeTraceback(
  ...frames: [file: string, line: number, fn: string, code: string][]
): string[] {
  return [
    ...EXECUTE_FRAMES,
    ...frames.map(
      ([file, line, fn, code]) =>
        `  File "${COMFYUI_DIR}/${file}", line ${line}, in ${fn}\n    ${code}\n`,
    ),
  ];
}

type Nested = number | (Nested | '...')[];

function pyExp(v: number, digits: number): string {
  return v.toExponential(digits).replace(/e([+-])(\d)$/, 'e$10$2');
}

/** torch's `_Formatter` for float tensors (precision 4). */
function makeFormatter(values: number[]): { fmt: (v: number) => string; width: number } {
  const nz = values.filter((v) => Number.isFinite(v) && v !== 0);
  let intMode = true;
  let sci = false;
  let width = 1;
  if (nz.length > 0) {
    const abs = nz.map(Math.abs);
    const min = Math.min(...abs);
    const max = Math.max(...abs);
    intMode = nz.every((v) => v === Math.ceil(v));
    sci = max / min > 1000 || max > 1e8 || (!intMode && min < 1e-4);
    for (const v of nz) {
      const s = sci ? pyExp(v, 4) : intMode ? `${v.toFixed(0)}.` : v.toFixed(4);
      width = Math.max(width, s.length);
    }
  }
  const fmt = (v: number) =>
    (sci ? pyExp(v, 4) : intMode ? `${v.toFixed(0)}.` : v.toFixed(4)).padStart(width);
  return { fmt, width };
}

/** `str(tensor)` for a float tensor, summarized like torch (threshold 1000, edgeitems 3). */
export function tensorRepr(shape: number[], valueAt: (index: number[]) => number): string {
  const summarize = shape.reduce((a, b) => a * b, 1) > 1000;
  const values: number[] = [];
  const view = (prefix: number[]): Nested => {
    if (prefix.length === shape.length) {
      const v = valueAt(prefix);
      values.push(v);
      return v;
    }
    const n = shape[prefix.length];
    const idx = summarize && n > 6 ? [0, 1, 2, -1, n - 3, n - 2, n - 1] : [...Array(n).keys()];
    return idx.map((i) => (i < 0 ? '...' : view([...prefix, i])));
  };
  const root = view([]);
  const { fmt, width } = makeFormatter([...new Set(values)]);
  const render = (node: Nested, dims: number, indent: number): string => {
    const items = node as (Nested | '...')[];
    if (dims === 1) {
      const data = items.map((x) => (x === '...' ? ' ...' : fmt(x as number)));
      const perLine = Math.max(1, Math.floor((80 - indent) / (width + 2)));
      const lines: string[] = [];
      for (let i = 0; i < data.length; i += perLine)
        lines.push(data.slice(i, i + perLine).join(', '));
      return `[${lines.join(`,\n${' '.repeat(indent + 1)}`)}]`;
    }
    const slices = items.map((x) => (x === '...' ? '...' : render(x, dims - 1, indent + 1)));
    return `[${slices.join(`,${'\n'.repeat(dims - 1)}${' '.repeat(indent + 1)}`)}]`;
  };
  return `tensor(${render(root, shape.length, 7)})`;
}

/** Python's `format_value` for `current_inputs`: primitives as they are, the rest as `str()`. */
export function formatValue(v: unknown): unknown {
  if (v === null || v === undefined) return null;
  if (['string', 'number', 'bigint', 'boolean'].includes(typeof v) || v instanceof PyFloat)
    return v;
  if (typeof v === 'object' && v !== null && 'toPyStr' in v && typeof v.toPyStr === 'function') {
    return (v as { toPyStr(): string }).toPyStr();
  }
  return pyRepr(v);
}
