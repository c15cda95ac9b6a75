// What the dashboard knows of the daemon, kept fresh by polls (every POLL_MS, and soon after
// any event) and by the event stream. Pages subscribe and redraw from it.

import * as api from "./api";
import { EventStream, type LinkState } from "./live";
import { Depth, Throughput } from "./series";
import type { Analysis, Health, Queue, RotaEvent, Stats, Status, Worker } from "./types";

const POLL_MS = 1500;
// Stats and findings read every attempt of the last hour, which costs the daemon more: only
// while a page shows them, and less often.
const STATS_MS = 10_000;
const KEEP_EVENTS = 2000;
// Events arrive in bursts while tasks finish fast: refresh at most this often because of them.
const EVENT_REFRESH_MS = 1000;
// Pages redraw at most this often: thousands of events a second must not cost the machine
// whose work they describe (bench/observed.py measures it).
const REDRAW_MS = 500;

export const model = {
  status: null as Status | null,
  workers: [] as Worker[],
  queues: [] as Queue[],
  health: null as Health | null,
  stats: null as Stats | null,
  analysis: null as Analysis | null,
  events: [] as RotaEvent[],
  link: "connecting" as LinkState,
  error: null as string | null, // why the last poll failed, if it did
  throughput: new Throughput(),
  depth: new Depth(),
};

type Listener = () => void;
const listeners = new Set<Listener>();
const eventListeners = new Set<(batch: RotaEvent[]) => void>();
let notifyPending = false;

export function subscribe(f: Listener): () => void {
  listeners.add(f);
  return () => listeners.delete(f);
}

// Raw events as they arrive (a page that follows one task, say).
export function onEvents(f: (batch: RotaEvent[]) => void): () => void {
  eventListeners.add(f);
  return () => eventListeners.delete(f);
}

let lastRedraw = 0;

export function changed(): void {
  if (notifyPending) return;
  notifyPending = true;
  const wait = Math.max(0, lastRedraw + REDRAW_MS - Date.now());
  window.setTimeout(() => {
    notifyPending = false;
    lastRedraw = Date.now();
    for (const f of listeners) f();
  }, wait);
}

// ---- polling ------------------------------------------------------------------------------

let running = false;
let pollTimer: number | undefined;
let polling = false;
let pollAgain = false;
let lastStats = 0;
let lastEventRefresh = 0;

export type Extra = "stats" | "analysis";
let needs = new Set<Extra>();

// What the page on show needs besides the basics; fetched at once if it was not there.
export function need(extras: Extra[]): void {
  const fresh = extras.some((e) => !needs.has(e));
  needs = new Set(extras);
  if (fresh) void refresh();
}

async function pollOnce(): Promise<void> {
  const now = Date.now();
  const due = now - lastStats >= STATS_MS;
  const wantStats = due && needs.has("stats");
  const wantAnalysis = due && needs.has("analysis");
  const [status, workers, queues, health, stats, analysis] = await Promise.all([
    api.get<Status>("/v1/status"),
    api.get<Worker[]>("/v1/workers"),
    api.get<Queue[]>("/v1/queues"),
    api.get<Health>("/v1/health"),
    wantStats ? api.get<Stats>("/v1/stats?since=1h&by=queue") : Promise.resolve(model.stats),
    wantAnalysis ? api.get<Analysis>("/v1/analyze") : Promise.resolve(model.analysis),
  ]);
  if (wantStats || wantAnalysis) lastStats = now;
  Object.assign(model, { status, workers, queues, health, stats, analysis, error: null });
  const t = status.tasks;
  model.depth.add(now, t.queued, t.running, t.waiting + t.scheduled);
  model.throughput.prune(now);
}

async function poll(): Promise<void> {
  if (!running) return;
  window.clearTimeout(pollTimer);
  if (polling) {
    pollAgain = true;
    return;
  }
  polling = true;
  try {
    await pollOnce();
  } catch (e) {
    model.error = e instanceof Error ? e.message : String(e);
  } finally {
    polling = false;
    changed();
    if (running) pollTimer = window.setTimeout(poll, pollAgain ? 0 : POLL_MS);
    pollAgain = false;
  }
}

// Polls now, stats and findings too (after an action, so that its effect shows at once).
export function refresh(): Promise<void> {
  lastStats = 0;
  return poll();
}

// ---- events -------------------------------------------------------------------------------

function takeEvents(batch: RotaEvent[]): void {
  for (const e of batch) {
    if (e.kind === "task" && (e.to === "succeeded" || e.to === "failed")) {
      model.throughput.add(Date.parse(e.at), e.to);
    }
  }
  model.events.push(...batch);
  if (model.events.length > KEEP_EVENTS) model.events.splice(0, model.events.length - KEEP_EVENTS);
  for (const f of eventListeners) f(batch);
  const now = Date.now();
  if (now - lastEventRefresh >= EVENT_REFRESH_MS) {
    lastEventRefresh = now;
    void poll();
  }
  changed();
}

let stream: EventStream | null = null;

export function start(): void {
  if (running) return;
  running = true;
  lastStats = 0;
  stream = new EventStream({
    events: takeEvents,
    state(state: LinkState) {
      model.link = state;
      changed();
    },
  });
  stream.start();
  void poll();
}

export function stop(): void {
  running = false;
  window.clearTimeout(pollTimer);
  stream?.stop();
  stream = null;
  Object.assign(model, {
    status: null,
    workers: [],
    queues: [],
    health: null,
    stats: null,
    analysis: null,
    events: [],
    throughput: new Throughput(),
    depth: new Depth(),
  });
}
