// Overview: counts by state, throughput, failure rate and backlog over time, workers by health,
// queues, wait and duration percentiles, findings.

import { Chart } from "../charts";
import { h, KeyedTable, link, pill, replace, setText } from "../dom";
import * as fmt from "../format";
import { model } from "../model";
import type { Page } from "../page";
import { TASK_STATES, WORKER_STATES, type Queue, type StatsGroup } from "../types";

const WINDOWS: [string, number][] = [
  ["5m", 5 * 60_000],
  ["15m", 15 * 60_000],
  ["30m", 30 * 60_000],
];

export function overviewPage(): Page {
  let windowMs = WINDOWS[0][1];

  const tiles = new Map<string, HTMLElement>();
  const tileRow = h(
    "div",
    { class: "tiles" },
    TASK_STATES.map((s) => {
      const value = h("div", { class: "tile-value" }, "–");
      tiles.set(s, value);
      return h(
        "a",
        { class: `tile tone-${fmt.taskTone(s)}`, href: `/tasks?state=${s}`, "data-nav": "", "data-state": s },
        h("div", { class: "tile-label" }, s),
        value,
      );
    }),
  );

  const chartBox = () => h("div", { class: "chart" });
  const tpBox = chartBox();
  const frBox = chartBox();
  const dpBox = chartBox();
  const throughput = new Chart(tpBox, [
    { label: "succeeded", color: "--ok", fill: true, unit: "/s" },
    { label: "failed", color: "--bad", fill: true, unit: "/s" },
  ]);
  const failureRate = new Chart(frBox, [{ label: "failed", color: "--bad", fill: true }], { yUnit: "%" });
  const depth = new Chart(dpBox, [
    { label: "queued", color: "--info", fill: true },
    { label: "running", color: "--run" },
    { label: "waiting", color: "--wait" },
  ]);

  const windowButtons = WINDOWS.map(([label, ms]) =>
    h(
      "button",
      {
        class: "seg",
        onclick: () => {
          windowMs = ms;
          windowButtons.forEach((b, i) => b.classList.toggle("active", WINDOWS[i][1] === ms));
          update();
        },
      },
      label,
    ),
  );
  windowButtons[0].classList.add("active");
  const rateNow = h("span", { class: "sub" });

  const healthBar = h("div", { class: "healthbar" });
  const healthLegend = h("div", { class: "legend" });
  const poolLine = h("div", { class: "sub" });
  const poolFigures = h("div", { class: "figures" });

  const queueTable = new KeyedTable<Queue>(
    [
      { title: "queue", render: (q) => link(`/tasks?queue=${encodeURIComponent(q.name)}`, q.name) },
      { title: "", render: (q) => (q.paused ? pill("paused", "warn") : "") },
      { title: "queued", class: "num", render: (q) => fmt.count(q.counts.queued) },
      { title: "running", class: "num", render: (q) => fmt.count(q.counts.running) },
      { title: "failed", class: "num", render: (q) => fmt.count(q.counts.failed) },
    ],
    (q) => q.name,
    "No queues yet.",
  );

  const statsTable = new KeyedTable<StatsGroup>(
    [
      { title: "queue", render: (g) => g.key },
      { title: "done", class: "num", render: (g) => fmt.count(g.completed) },
      { title: "failed", class: "num", render: (g) => fmt.count(g.failed) },
      { title: "success", class: "num", render: (g) => fmt.percent(g.success_rate) },
      { title: "wait mean", class: "num", render: (g) => fmt.duration(g.wait_ms.mean) },
      { title: "wait p95", class: "num", render: (g) => fmt.duration(g.wait_ms.p95) },
      { title: "run p50", class: "num", render: (g) => fmt.duration(g.duration_ms.p50) },
      { title: "run p95", class: "num", render: (g) => fmt.duration(g.duration_ms.p95) },
      { title: "run max", class: "num", render: (g) => fmt.duration(g.duration_ms.max) },
      { title: "per min", class: "num", render: (g) => fmt.rate(g.throughput_per_min) },
    ],
    (g) => g.key,
    "Nothing finished in the last hour.",
  );

  const findings = h("div", { class: "findings" });

  const element = h(
    "div",
    { class: "page overview" },
    tileRow,
    h(
      "section",
      { class: "panel" },
      h("header", null, h("h2", null, "Activity"), rateNow, h("div", { class: "segs" }, windowButtons)),
      h(
        "div",
        { class: "charts" },
        h("figure", null, h("figcaption", null, "Throughput (tasks/s)"), tpBox),
        h("figure", null, h("figcaption", null, "Failure rate (trailing 30 s)"), frBox),
        h("figure", null, h("figcaption", null, "Backlog"), dpBox),
      ),
    ),
    h(
      "div",
      { class: "cols" },
      h(
        "section",
        { class: "panel" },
        h("header", null, h("h2", null, link("/workers", "Workers")), poolLine),
        healthBar,
        healthLegend,
        poolFigures,
      ),
      h(
        "section",
        { class: "panel" },
        h("header", null, h("h2", null, link("/queues", "Queues"))),
        queueTable.element,
      ),
    ),
    h(
      "section",
      { class: "panel" },
      h("header", null, h("h2", null, "Wait and run time"), h("span", { class: "sub" }, "last hour, by queue")),
      statsTable.element,
    ),
    findings,
  );

  function update(): void {
    const now = Date.now();
    const st = model.status;
    for (const s of TASK_STATES) setText(tiles.get(s)!, st ? fmt.count(st.tasks[s]) : "–");

    const [t, ok, bad, rate] = model.throughput.series(now, windowMs);
    throughput.set([t, ok, bad], now - windowMs, now);
    failureRate.set([t, rate], now - windowMs, now);
    depth.set(model.depth.series(now, windowMs), now - windowMs, now);
    const pm = model.throughput.perMinute(now);
    setText(rateNow, `last minute: ${fmt.rate(pm.ok)} succeeded, ${fmt.rate(pm.failed)} failed per min`);

    updateHealth();
    queueTable.update(model.queues);
    statsTable.update(model.stats?.groups ?? []);
    const fs = model.analysis?.findings ?? [];
    const sig = JSON.stringify(fs);
    if (findings.dataset.sig !== sig) {
      findings.dataset.sig = sig;
      replace(
        findings,
        fs.length === 0
          ? null
          : h(
              "section",
              { class: "panel" },
              h("header", null, h("h2", null, "Findings")),
              h(
                "ul",
                { class: "finding-list" },
                fs.map((f) => h("li", null, h("b", null, f.message), " ", h("span", { class: "sub" }, f.action))),
              ),
            ),
      );
    }
  }

  function updateHealth(): void {
    const byState = new Map<string, number>();
    for (const w of model.workers) byState.set(w.state, (byState.get(w.state) ?? 0) + 1);
    const total = model.workers.length;
    const sig = JSON.stringify([...byState]);
    const auto = model.status?.autoscale;
    setText(
      poolLine,
      `${total} ${total === 1 ? "worker" : "workers"}` +
        (auto ? ` · autoscaling ${auto.min}–${auto.max}` : "") +
        (model.health?.pool.state === "degraded" ? " · degraded" : ""),
    );
    const ws = model.workers;
    const busy = ws.filter((w) => w.state === "working" || w.state === "slow").length;
    const restarts = ws.reduce((n, w) => n + w.restarts, 0);
    const oldest = Math.max(0, ...ws.map((w) => w.heartbeat_age_ms ?? 0));
    const lag = model.health?.loop_lag_ms;
    const figures: [string, string][] = [
      ["busy", `${busy} of ${total}`],
      ["restarts", fmt.count(restarts)],
      ["oldest heartbeat", ws.length ? fmt.duration(oldest) : "–"],
      ["loop lag", lag === undefined ? "–" : fmt.duration(lag)],
    ];
    const figSig = JSON.stringify([figures[0], figures[1], Math.round(oldest / 250), lag]);
    if (poolFigures.dataset.sig !== figSig) {
      poolFigures.dataset.sig = figSig;
      replace(poolFigures, figures.map(([k, v]) => h("div", null, h("span", { class: "sub" }, k), h("b", null, v))));
    }
    if (healthBar.dataset.sig === sig) return;
    healthBar.dataset.sig = sig;
    replace(
      healthBar,
      WORKER_STATES.filter((s) => byState.get(s)).map((s) => {
        const seg = h("div", { class: `seg-${fmt.workerTone(s)}`, title: `${s}: ${byState.get(s)}` });
        seg.style.flexGrow = String(byState.get(s));
        return seg;
      }),
    );
    replace(
      healthLegend,
      total === 0
        ? h("span", { class: "sub" }, "The pool has no workers (scale it up on the Workers page).")
        : WORKER_STATES.filter((s) => byState.get(s)).map((s) =>
            h("span", { class: "legend-item" }, pill(s, fmt.workerTone(s)), h("b", null, String(byState.get(s)))),
          ),
    );
  }

  return {
    title: "Overview",
    element,
    needs: ["stats", "analysis"],
    update,
    destroy() {
      throughput.destroy();
      failureRate.destroy();
      depth.destroy();
    },
  };
}
