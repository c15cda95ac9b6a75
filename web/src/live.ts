// Follows /v1/events as server-sent events over fetch() (EventSource cannot send the token),
// and reconnects with ?after=<last id> when the stream drops.

import { authHeaders } from "./api";
import type { RotaEvent } from "./types";

export type LinkState = "connecting" | "live" | "reconnecting" | "unauthorized";

export interface StreamHandlers {
  events(batch: RotaEvent[]): void;
  state(state: LinkState): void;
}

// How many past events the first connection replays (they fill the charts and the event log).
const REPLAY = 2000;

export class EventStream {
  private lastId = 0;
  private abort: AbortController | null = null;
  private stopped = false;

  constructor(private readonly on: StreamHandlers) {}

  start(): void {
    this.stopped = false;
    void this.loop();
  }

  stop(): void {
    this.stopped = true;
    this.abort?.abort();
  }

  private async loop(): Promise<void> {
    let backoff = 250;
    this.on.state("connecting");
    while (!this.stopped) {
      const outcome = await this.follow();
      if (outcome === "unauthorized") {
        this.on.state("unauthorized");
        return;
      }
      if (this.stopped) return;
      if (outcome === "streamed") backoff = 250;
      this.on.state("reconnecting");
      await new Promise((r) => setTimeout(r, backoff));
      backoff = Math.min(backoff * 2, 5000);
    }
  }

  // One connection, until it drops: "streamed" if it delivered anything.
  private async follow(): Promise<"streamed" | "failed" | "unauthorized"> {
    this.abort = new AbortController();
    const after = this.lastId > 0 ? this.lastId : -REPLAY;
    let res: Response;
    try {
      res = await fetch(`/v1/events?after=${after}`, {
        headers: { ...authHeaders(), Accept: "text/event-stream" },
        signal: this.abort.signal,
        cache: "no-store",
      });
    } catch {
      return "failed";
    }
    if (res.status === 401) return "unauthorized";
    if (!res.ok || !res.body) return "failed";
    this.on.state("live");
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        const end = buffer.lastIndexOf("\n\n");
        if (end < 0) continue;
        const frames = buffer.slice(0, end).split("\n\n");
        buffer = buffer.slice(end + 2);
        const batch = frames.map(parseFrame).filter((e): e is RotaEvent => e !== null);
        if (batch.length === 0) continue;
        this.lastId = batch[batch.length - 1].id;
        this.on.events(batch);
      }
    } catch {
      // dropped (or stopped): reconnect below
    }
    return "streamed";
  }
}

// One server-sent event: "id: N\nevent: KIND\ndata: JSON".
function parseFrame(frame: string): RotaEvent | null {
  let data = "";
  for (const line of frame.split("\n")) {
    if (line.startsWith("data:")) data += line.slice(5).trimStart();
  }
  if (!data) return null;
  try {
    return JSON.parse(data) as RotaEvent;
  } catch {
    return null;
  }
}
