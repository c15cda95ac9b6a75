// Workers: each worker's health, current task, restarts and heartbeat age; scale the pool,
// autoscale it, restart a worker.

import { act } from "../actions";
import * as api from "../api";
import { h, KeyedTable, link, pill, setText } from "../dom";
import * as fmt from "../format";
import { model } from "../model";
import type { Page } from "../page";
import type { Worker } from "../types";

// A heartbeat older than this is worth a colour even before the daemon calls it unresponsive.
const LATE_HEARTBEAT_MS = 2500;

export function workersPage(): Page {
  const size = h("input", { type: "number", min: "0", max: "1024", class: "narrow", name: "workers", "aria-label": "workers" });
  const scaleButton = h("button", { type: "submit", class: "primary" }, "Scale");
  const scaleForm = h(
    "form",
    {
      class: "inline",
      onsubmit: (e: Event) => {
        e.preventDefault();
        const n = Number(size.value);
        void act(scaleButton, () => api.post("/v1/scale", { workers: n }), () => `Pool set to ${n} workers`);
      },
    },
    h("label", null, "Pool size"),
    size,
    scaleButton,
  );

  const min = h("input", { type: "number", min: "0", max: "1024", class: "narrow", name: "min", "aria-label": "min" });
  const max = h("input", { type: "number", min: "1", max: "1024", class: "narrow", name: "max", "aria-label": "max" });
  const autoButton = h("button", { type: "submit" }, "Autoscale");
  const autoForm = h(
    "form",
    {
      class: "inline",
      onsubmit: (e: Event) => {
        e.preventDefault();
        const range = { min: Number(min.value), max: Number(max.value) };
        void act(
          autoButton,
          () => api.post("/v1/scale", range),
          () => `Autoscaling between ${range.min} and ${range.max} workers`,
        );
      },
    },
    h("label", null, "Autoscale"),
    min,
    h("span", { class: "sub" }, "to"),
    max,
    autoButton,
  );
  const summary = h("span", { class: "sub" });

  const table = new KeyedTable<Worker>(
    [
      { title: "worker", class: "num", render: (w) => String(w.id) },
      { title: "slot", class: "num", render: (w) => (w.slot === null ? "–" : String(w.slot)) },
      { title: "pid", class: "num mono", render: (w) => (w.pid === null ? "–" : String(w.pid)) },
      { title: "state", render: (w) => pill(w.state, fmt.workerTone(w.state)) },
      { title: "task", render: (w) => (w.task ? link(`/tasks/${w.task}`, `#${w.task}`) : h("span", { class: "sub" }, "–")) },
      { title: "uptime", class: "num", render: (w) => fmt.duration(w.uptime_ms) },
      { title: "restarts", class: "num", render: (w) => (w.restarts ? h("b", { class: "warn-text" }, String(w.restarts)) : "0") },
      { title: "done", class: "num", render: (w) => fmt.count(w.tasks_done) },
      { title: "failed", class: "num", render: (w) => fmt.count(w.tasks_failed) },
      {
        title: "heartbeat",
        class: "num",
        render: (w) =>
          w.heartbeat_age_ms === null
            ? "–"
            : h(
                "span",
                { class: w.heartbeat_age_ms > LATE_HEARTBEAT_MS ? "bad-text" : "" },
                `${fmt.duration(w.heartbeat_age_ms)} ago`,
              ),
        // Redraw on whole tenths of a second only: the age changes on every poll.
        key: (w) => `${Math.round((w.heartbeat_age_ms ?? -1) / 100)}`,
      },
      {
        title: "",
        class: "actions",
        render: (w) => {
          const b: HTMLButtonElement = h(
            "button",
            {
              class: "small",
              title: "Kill this worker and start a new one in its slot; its task is retried",
              onclick: () => {
                if (!confirm(`Restart worker ${w.id}?${w.task ? ` Its task #${w.task} goes back in line.` : ""}`)) return;
                void act(b, () => api.post(`/v1/workers/${w.id}/restart`), () => `Worker ${w.id} restarted`);
              },
            },
            "Restart",
          );
          return b;
        },
        key: (w) => `${w.id}:${w.task}`,
      },
    ],
    (w) => String(w.id),
    "The pool has no workers.",
    (w) => `row-${fmt.workerTone(w.state)}`,
  );

  const element = h(
    "div",
    { class: "page" },
    h(
      "section",
      { class: "panel" },
      h("header", null, h("h2", null, "Workers"), summary, h("div", { class: "spacer" }), scaleForm, autoForm),
      table.element,
    ),
  );

  let seeded = false;
  function update(): void {
    table.update(model.workers);
    const st = model.status;
    if (!st) return;
    const busy = model.workers.filter((w) => w.state === "working" || w.state === "slow").length;
    setText(
      summary,
      `${model.workers.length} in the pool, ${busy} busy` +
        (st.autoscale ? ` · autoscaling between ${st.autoscale.min} and ${st.autoscale.max}` : ""),
    );
    // Fill the forms once with what the daemon has; after that they are the user's.
    if (!seeded) {
      seeded = true;
      size.value = String(st.workers);
      min.value = String(st.autoscale?.min ?? 1);
      max.value = String(st.autoscale?.max ?? Math.max(st.workers, 4));
    }
  }

  return { title: "Workers", element, update };
}
