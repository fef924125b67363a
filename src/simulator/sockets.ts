/**
 * PromptServer's WebSocket bookkeeping in 0.3.64: one socket per sid (`clientId`, or a
 * random hex id), `status` + optional bare `executing{node}` on connect, feature-flag reply,
 * sid-targeted or broadcast JSON messages — and the 0.3.64 quirk that closing an old socket
 * unregisters its sid even when a newer socket has taken it over.
 */
import { randomUUID } from 'node:crypto';
import WebSocket from 'ws';
import { isObject, parseJson, stringify, type Json, type JsonObject } from './json';

export const SERVER_FEATURES = { supports_preview_metadata: true, max_upload_size: 104857600 };

export interface HubHost {
  queueInfo(): JsonObject;
  /** The node to announce to a reconnecting sid that owns the running prompt, else null. */
  currentNodeFor(sid: string): string | null;
}

export class SocketHub {
  /** sid → socket, as `PromptServer.sockets`. */
  private readonly sockets = new Map<string, WebSocket>();
  /** Every open socket, including ones whose sid was taken over. */
  private readonly all = new Set<WebSocket>();
  /** Sockets dropped by closeAll(): their late close events must not touch new sockets. */
  private readonly dropped = new WeakSet<WebSocket>();

  constructor(private readonly host: HubHost) {}

  accept(ws: WebSocket, clientId: string | null): void {
    this.all.add(ws);
    let sid = clientId;
    if (sid) this.sockets.delete(sid);
    else sid = randomUUID().replace(/-/g, '');
    this.sockets.set(sid, ws);
    const id = sid;
    this.write(ws, 'status', { status: this.host.queueInfo(), sid: id });
    const node = this.host.currentNodeFor(id);
    if (node !== null) this.write(ws, 'executing', { node });

    let first = true;
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      let msg: Json;
      try {
        msg = parseJson(data.toString());
      } catch {
        return;
      }
      if (!isObject(msg)) return; // Python: data.get(...) raises, the flag stays as it is
      if (first && msg.type === 'feature_flags') this.write(ws, 'feature_flags', SERVER_FEATURES);
      first = false;
    });
    ws.on('close', () => {
      this.all.delete(ws);
      if (!this.dropped.has(ws)) this.sockets.delete(id); // sic: may remove a newer socket of the same sid
    });
    ws.on('error', () => undefined);
  }

  private write(ws: WebSocket, type: string, data: unknown): void {
    if (ws.readyState === WebSocket.OPEN) ws.send(stringify({ type, data }));
  }

  /** `send_json`: to the socket registered under `sid` (a string), or to all when sid is null. */
  send(type: string, data: unknown, sid: Json): void {
    if (sid === null) {
      for (const ws of this.sockets.values()) this.write(ws, type, data);
    } else if (typeof sid === 'string') {
      const ws = this.sockets.get(sid);
      if (ws) this.write(ws, type, data);
    }
  }

  /** Drops every connection (server stop/restart). */
  closeAll(): void {
    for (const ws of this.all) {
      this.dropped.add(ws);
      ws.terminate();
    }
    this.all.clear();
    this.sockets.clear();
  }
}
