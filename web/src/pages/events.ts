// Events: every task transition, worker health change, alert and pool change, live.

import { h, KeyedTable, link, pill, setText } from "../dom";
import * as fmt from "../format";
import { model } from "../model";
import type { Page } from "../page";
import type { RotaEvent } from "../types";

const SHOW = 500;

function tone(e: RotaEvent): string {
  if (e.kind === "task") return fmt.taskTone(e.to ?? "");
  if (e.kind === "worker") return e.to ? fmt.workerTone(e.to) : "info";
  if (e.kind === "alert") return "bad";
  return "muted";
}

export function eventsPage(): Page {
  const kinds = ["all", "task", "worker", "alert", "other"];
  let kind = "all";
  let paused = false;
  let text = "";
  const kindButtons = kinds.map((k) =>
    h(
      "button",
      {
        class: `seg${k === kind ? " active" : ""}`,
        onclick: () => {
          kind = k;
          kindButtons.forEach((b, i) => b.classList.toggle("active", kinds[i] === k));
          draw(true);
        },
      },
      k,
    ),
  );
  const search = h("input", {
    type: "search",
    placeholder: "Filter…",
    "aria-label": "filter events",
    oninput: () => {
      text = search.value.toLowerCase();
      draw(true);
    },
  });
  const pauseButton: HTMLButtonElement = h(
    "button",
    {
      onclick: () => {
        paused = !paused;
        pauseButton.textContent = paused ? "Resume" : "Pause";
        pauseButton.classList.toggle("primary", paused);
        draw(true);
      },
    },
    "Pause",
  );
  const summary = h("span", { class: "sub" });

  const table = new KeyedTable<RotaEvent>(
    [
      { title: "id", class: "num", render: (e) => String(e.id) },
      { title: "time", class: "num", render: (e) => fmt.time(e.at) },
      { title: "kind", render: (e) => h("span", { class: `kind tone-${tone(e)}` }, e.kind) },
      { title: "task", class: "num", render: (e) => (e.task ? link(`/tasks/${e.task}`, `#${e.task}`) : "") },
      { title: "worker", class: "num", render: (e) => (e.worker ? String(e.worker) : "") },
      {
        title: "change",
        render: (e) => {
          const tone = e.kind === "worker" ? fmt.workerTone : fmt.taskTone;
          return [e.from ? pill(e.from, tone(e.from)) : "", e.from && e.to ? " → " : "", e.to ? pill(e.to, tone(e.to)) : ""];
        },
      },
      { title: "detail", class: "wrap", render: (e) => e.detail },
    ],
    (e) => String(e.id),
    "No events yet.",
  );

  function matches(e: RotaEvent): boolean {
    if (kind === "other" ? ["task", "worker", "alert"].includes(e.kind) : kind !== "all" && e.kind !== kind) return false;
    if (!text) return true;
    return `${e.kind} #${e.task ?? ""} ${e.from ?? ""} ${e.to ?? ""} ${e.detail}`.toLowerCase().includes(text);
  }

  function draw(force = false): void {
    if (paused && !force) return;
    const out: RotaEvent[] = [];
    for (let i = model.events.length - 1; i >= 0 && out.length < SHOW; i--) {
      if (matches(model.events[i])) out.push(model.events[i]);
    }
    table.update(out);
    setText(summary, `${out.length} shown of the last ${model.events.length}${paused ? " · paused" : ""}`);
  }

  const element = h(
    "div",
    { class: "page" },
    h(
      "section",
      { class: "panel" },
      h("header", null, h("h2", null, "Events"), summary, h("div", { class: "spacer" }), pauseButton),
      h("div", { class: "toolbar" }, h("div", { class: "segs" }, kindButtons), search),
      table.element,
    ),
  );

  return { title: "Events", element, update: () => draw() };
}
