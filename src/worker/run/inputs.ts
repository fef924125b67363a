import type { Readable } from 'node:stream';
import { ComfyHttpError, MediaError } from '../../errors';
import { contentTypeOf, extensionFor, extensionOf } from '../../storage/content-type';
import { keys } from '../../storage/media';
import { meter } from '../../storage/meter';
import type { JobRun } from './job-run';
import type { JobInput, Workflow } from '../../job/data';

/**
 * Step 2, inputs (DESIGN "Media in"): before each POST of the prompt (a resubmission and
 * another instance included), every input file goes to the chosen instance through
 * POST /upload/image, in subfolder `cq` under `<sha256>.<ext>` with overwrite, and the
 * workflow sent has each node input equal to an input's name rewritten to ComfyUI's name.
 * Names derive from the content, so doing it again is harmless. A URL input is fetched once
 * into storage (`jobs/<id>/inputs/<i>`) and its size and hash saved with the job, so every
 * later step sends the same bytes. Returns the workflow to POST.
 */
export const INPUT_SUBFOLDER = 'cq';

export async function prepareInputs(run: JobRun, workflow: Workflow): Promise<Workflow> {
  const inputs = run.data.inputs ?? [];
  if (inputs.length === 0) return workflow;
  const media = run.deps.media;
  if (!media) throw new Error('this worker has no file storage, and the job has input files');
  const names = new Map<string, string>();
  for (const [i, input] of inputs.entries()) {
    const file = await stored(run, input, i);
    const ext = extensionFor(file.contentType) || extensionOf(input.name) || 'bin';
    const got = await media.storage.get(file.key).catch((err: unknown) => {
      throw new MediaError('input_unavailable', 'storage did not answer', true, { cause: err });
    });
    if (!got)
      throw new MediaError(
        'input_unavailable',
        `input ${input.name} is no longer in storage`,
        false,
      );
    const r = await upload(run, got.body, {
      filename: `${file.sha256}.${ext}`,
      contentType: file.contentType,
      size: file.size,
    });
    names.set(input.name, r.subfolder ? `${r.subfolder}/${r.name}` : r.name);
  }
  run.fault('after-inputs-uploaded');
  return rewrite(workflow, names);
}

/** A 4xx from /upload/image is ComfyUI refusing the file: the job fails `input_unavailable`. */
async function upload(
  run: JobRun,
  body: Readable,
  file: { filename: string; contentType: string; size: number },
) {
  try {
    // a write that creates work: only while this worker's lock is proven fresh (fence.ts)
    return await run.fence((beforeWrite) =>
      run
        .client()
        .uploadImage(
          { ...file, body },
          { subfolder: INPUT_SUBFOLDER, overwrite: true, beforeWrite },
        ),
    );
  } catch (err) {
    body.destroy();
    if (err instanceof ComfyHttpError && !err.retryable) {
      throw new MediaError(
        'input_unavailable',
        `ComfyUI refused input ${file.filename}: ${err.message}`,
        false,
      );
    }
    throw err; // transport errors and 5xx: retried like any ComfyUI error
  }
}

/** The storage key, size, hash and type of an input; a URL input is fetched first (once). */
async function stored(
  run: JobRun,
  input: JobInput,
  index: number,
): Promise<{ key: string; size: number; sha256: string; contentType: string }> {
  if ('upload' in input) return { ...input, key: keys.uploadData(input.upload) };
  const key = keys.input(run.jobId, index);
  const { storage, fetcher, maxBytes } = run.deps.media!;
  if (input.sha256 && input.size !== undefined && (await storage.head(key).catch(() => null))) {
    return {
      key,
      size: input.size,
      sha256: input.sha256,
      contentType: input.contentType ?? contentTypeOf(input.name),
    };
  }
  const res = await fetcher.open(input.url, run.signal);
  if (res.size !== undefined && res.size > maxBytes) {
    res.body.destroy();
    throw new MediaError(
      'input_unavailable',
      `input ${input.name} is larger than UPLOAD_MAX_BYTES (${maxBytes})`,
      false,
    );
  }
  const contentType = (
    res.contentType?.split(';')[0].trim() || contentTypeOf(input.name)
  ).toLowerCase();
  const m = meter(maxBytes);
  res.body.pipe(m.stream);
  res.body.once('error', (err) => m.stream.destroy(err));
  try {
    await storage.put(key, m.stream, { contentType, signal: run.signal });
  } catch (err) {
    if (err instanceof Error && err.name === 'TooLargeError') {
      throw new MediaError(
        'input_unavailable',
        `input ${input.name} is larger than UPLOAD_MAX_BYTES (${maxBytes})`,
        false,
      );
    }
    if (err instanceof MediaError) throw err;
    throw new MediaError(
      'input_unavailable',
      `input ${input.name} could not be fetched and stored: ${(err as Error).message}`,
      true,
      { cause: err },
    );
  }
  Object.assign(input, { size: m.size, sha256: m.sha256(), contentType });
  await run.save(run.state); // the recorded hash: every later step sends these bytes
  return { key, size: m.size, sha256: m.sha256(), contentType };
}

/** The workflow with every node input equal to an input's name replaced by ComfyUI's name. */
export function rewrite(workflow: Workflow, names: Map<string, string>): Workflow {
  const out: Workflow = {};
  for (const [id, node] of Object.entries(workflow)) {
    const inputs: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(node.inputs)) {
      inputs[k] = typeof v === 'string' && names.has(v) ? names.get(v) : v;
    }
    out[id] = { ...node, inputs };
  }
  return out;
}
