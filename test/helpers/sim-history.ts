/** A prompt's entry in a ComfyUI's (or the simulator's) `/history`, as its clients read it. */
export interface HistoryEntry {
  status: { status_str: string; completed: boolean; messages: [string, { timestamp?: number }][] };
  outputs: Record<string, unknown>;
}

/** The prompt's history entry, or undefined while it has none (pending, running, unknown). */
export async function historyEntry(
  comfyuiUrl: string,
  promptId: string,
): Promise<HistoryEntry | undefined> {
  const res = await fetch(`${comfyuiUrl}/history/${encodeURIComponent(promptId)}`, {
    signal: AbortSignal.timeout(10_000),
  });
  const body = (await res.json()) as Record<string, HistoryEntry>;
  return body[promptId];
}
