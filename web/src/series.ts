// Time series kept in the browser: finished tasks per bucket (from events) and queue depth
// (from status polls).

export const BUCKET_MS = 2000;
const KEEP = 30 * 60 * 1000; // the longest window a chart shows

export class Throughput {
  // bucket start (ms) -> [succeeded, failed]
  private readonly buckets = new Map<number, [number, number]>();

  add(atMs: number, state: "succeeded" | "failed"): void {
    const b = Math.floor(atMs / BUCKET_MS) * BUCKET_MS;
    let counts = this.buckets.get(b);
    if (!counts) {
      counts = [0, 0];
      this.buckets.set(b, counts);
    }
    counts[state === "succeeded" ? 0 : 1]++;
  }

  prune(nowMs: number): void {
    for (const b of this.buckets.keys()) if (b < nowMs - KEEP - BUCKET_MS) this.buckets.delete(b);
  }

  // Per bucket over [now - window, now]: times (s), succeeded/s, failed/s, and the failure
  // rate (%) over the trailing `rateSpan` buckets (null where nothing finished).
  series(nowMs: number, windowMs: number, rateSpan = 15): [number[], number[], number[], (number | null)[]] {
    const end = Math.floor(nowMs / BUCKET_MS) * BUCKET_MS;
    const start = end - windowMs;
    const t: number[] = [];
    const ok: number[] = [];
    const bad: number[] = [];
    const rate: (number | null)[] = [];
    const perSecond = 1000 / BUCKET_MS;
    const trail: [number, number][] = [];
    let sumOk = 0;
    let sumBad = 0;
    for (let b = start - rateSpan * BUCKET_MS; b <= end; b += BUCKET_MS) {
      const [s, f] = this.buckets.get(b) ?? [0, 0];
      trail.push([s, f]);
      sumOk += s;
      sumBad += f;
      if (trail.length > rateSpan) {
        const [os, of] = trail.shift()!;
        sumOk -= os;
        sumBad -= of;
      }
      if (b < start) continue;
      t.push(b / 1000);
      ok.push(s * perSecond);
      bad.push(f * perSecond);
      rate.push(sumOk + sumBad > 0 ? (100 * sumBad) / (sumOk + sumBad) : null);
    }
    return [t, ok, bad, rate];
  }

  // Finished per minute over the last `spanMs` (for the header figures).
  perMinute(nowMs: number, spanMs = 60_000): { ok: number; failed: number } {
    let ok = 0;
    let failed = 0;
    for (const [b, [s, f]] of this.buckets) {
      if (b >= nowMs - spanMs) {
        ok += s;
        failed += f;
      }
    }
    return { ok: (ok * 60_000) / spanMs, failed: (failed * 60_000) / spanMs };
  }
}

export class Depth {
  private readonly points: { t: number; queued: number; running: number; waiting: number }[] = [];

  add(atMs: number, queued: number, running: number, waiting: number): void {
    this.points.push({ t: atMs, queued, running, waiting });
    while (this.points.length && this.points[0].t < atMs - KEEP) this.points.shift();
  }

  series(nowMs: number, windowMs: number): [number[], number[], number[], number[]] {
    const pts = this.points.filter((p) => p.t >= nowMs - windowMs);
    return [
      pts.map((p) => p.t / 1000),
      pts.map((p) => p.queued),
      pts.map((p) => p.running),
      pts.map((p) => p.waiting),
    ];
  }
}
