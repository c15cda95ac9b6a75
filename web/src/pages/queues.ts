// Queues: depth by state, pause and resume, concurrency limit.

import { act } from "../actions";
import * as api from "../api";
import { h, KeyedTable, link, pill } from "../dom";
import * as fmt from "../format";
import { model } from "../model";
import type { Page } from "../page";
import type { Queue } from "../types";

export function queuesPage(): Page {
  const q = (name: string) => `/v1/queues/${encodeURIComponent(name)}`;
  const num = (title: string, pick: (q: Queue) => number, state?: string) => ({
    title,
    class: "num",
    render: (x: Queue) => {
      const n = pick(x);
      return n && state ? link(`/tasks?queue=${encodeURIComponent(x.name)}&state=${state}`, fmt.count(n)) : fmt.count(n);
    },
  });

  const table = new KeyedTable<Queue>(
    [
      { title: "queue", render: (x) => link(`/tasks?queue=${encodeURIComponent(x.name)}`, x.name) },
      { title: "state", render: (x) => (x.paused ? pill("paused", "warn") : pill("active", "ok")) },
      num("waiting", (x) => x.counts.waiting + x.counts.scheduled),
      num("queued", (x) => x.counts.queued, "queued"),
      num("running", (x) => x.counts.running, "running"),
      num("succeeded", (x) => x.counts.succeeded, "succeeded"),
      num("failed", (x) => x.counts.failed, "failed"),
      num("cancelled", (x) => x.counts.cancelled + x.counts.skipped),
      {
        title: "limit",
        class: "limit",
        render: (x) => {
          const input = h("input", {
            type: "number",
            min: "0",
            class: "narrow",
            value: x.limit === null ? "" : String(x.limit),
            placeholder: "none",
            "aria-label": `limit of ${x.name}`,
          });
          const b: HTMLButtonElement = h("button", { class: "small", type: "submit" }, "Set");
          return h(
            "form",
            {
              class: "inline",
              onsubmit: (e: Event) => {
                e.preventDefault();
                const limit = Number(input.value || 0);
                void act(
                  b,
                  () => api.post(`${q(x.name)}/limit`, { limit }),
                  () => (limit ? `${x.name}: at most ${limit} running` : `${x.name}: no limit`),
                );
              },
            },
            input,
            b,
          );
        },
        key: (x) => String(x.limit),
      },
      {
        title: "",
        class: "actions",
        render: (x) => {
          const b: HTMLButtonElement = h(
            "button",
            {
              class: x.paused ? "small primary" : "small",
              onclick: () =>
                void act(
                  b,
                  () => api.post(`${q(x.name)}/${x.paused ? "resume" : "pause"}`),
                  () => `${x.name} ${x.paused ? "resumed" : "paused"}`,
                ),
            },
            x.paused ? "Resume" : "Pause",
          );
          return b;
        },
        key: (x) => String(x.paused),
      },
    ],
    (x) => x.name,
    "No queues yet: a queue appears with its first task.",
    (x) => (x.paused ? "row-warn" : ""),
  );

  const element = h(
    "div",
    { class: "page" },
    h(
      "section",
      { class: "panel" },
      h(
        "header",
        null,
        h("h2", null, "Queues"),
        h("span", { class: "sub" }, "A paused queue starts nothing new; running tasks go on. The limit caps how many of its tasks run at once."),
      ),
      table.element,
    ),
  );

  return { title: "Queues", element, update: () => table.update(model.queues) };
}
