// Alerts: what the daemon raised in the last hour (dead workers, restarts, given-up slots, poison
// tasks, stalled queues), and findings with what to do about them.

import { h, KeyedTable, link, pill, replace } from "../dom";
import * as fmt from "../format";
import { model } from "../model";
import type { Page } from "../page";
import type { Alert, Finding } from "../types";

export function alertTone(kind: string): string {
  return kind === "worker_restarted" ? "warn" : "bad";
}

export function alertsPage(): Page {
  const table = new KeyedTable<Alert>(
    [
      { title: "time", class: "num", render: (a) => fmt.time(a.time) },
      { title: "alert", render: (a) => pill(a.alert, alertTone(a.alert)) },
      { title: "message", class: "wrap", render: (a) => a.message },
      {
        title: "about",
        render: (a) => [
          typeof a.worker === "number" ? h("span", { class: "chip" }, `worker ${a.worker}`) : null,
          typeof a.task === "number" ? link(`/tasks/${a.task}`, `#${a.task}`) : null,
          typeof a.queue === "string" ? link(`/tasks?queue=${encodeURIComponent(a.queue)}`, a.queue) : null,
        ],
      },
    ],
    (a) => `${a.time}|${a.alert}|${a.message}`,
    "No alerts in the last hour.",
  );

  const findingsTable = new KeyedTable<Finding>(
    [
      { title: "finding", render: (f) => pill(f.kind.replace(/_/g, " "), "warn") },
      { title: "what", class: "wrap", render: (f) => f.message },
      { title: "what to do", class: "wrap", render: (f) => f.action },
    ],
    (f) => `${f.kind}|${f.message}`,
    "Nothing to report: no growing backlog, timeouts, restarts or paused queues.",
  );
  const summary = h("span", { class: "sub" });

  const element = h(
    "div",
    { class: "page" },
    h(
      "section",
      { class: "panel" },
      h("header", null, h("h2", null, "Alerts"), summary),
      table.element,
    ),
    h("section", { class: "panel" }, h("header", null, h("h2", null, "Findings"), h("span", { class: "sub" }, "rota analyze, over the last hour")), findingsTable.element),
  );

  return {
    title: "Alerts",
    element,
    needs: ["analysis"],
    update() {
      const alerts = [...(model.health?.alerts_last_hour ?? [])].reverse();
      table.update(alerts);
      findingsTable.update(model.analysis?.findings ?? []);
      const h_ = model.health;
      replace(
        summary,
        h_ ? `last hour · pool ${h_.pool.state} · store ${h_.store.ok ? "ok" : "failing"} · loop lag ${fmt.duration(h_.loop_lag_ms)}` : "",
      );
    },
  };
}
