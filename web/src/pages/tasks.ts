// Tasks: newest first, filtered by state, queue and label, searched by text; retry and cancel
// a selection, or retry every failed task.

import { act } from "../actions";
import * as api from "../api";
import { h, KeyedTable, link, pill, replace, setText } from "../dom";
import * as fmt from "../format";
import { model, onEvents, subscribe } from "../model";
import type { Page, Route } from "../page";
import { TASK_STATES, type Task } from "../types";

const PAGE = 500;
const RETRYABLE = new Set(["failed", "cancelled", "skipped"]);
const FINISHED = new Set(["succeeded", "failed", "cancelled", "skipped"]);
// Reload soon after a change, but at most once a second while tasks keep changing.
const RELOAD_MS = 150;
const RELOAD_EVERY_MS = 1000;

export function tasksPage(route: Route): Page {
  const filter = {
    state: route.query.get("state") ?? "",
    queue: route.query.get("queue") ?? "",
    label: route.query.get("label") ?? "",
    q: route.query.get("q") ?? "",
  };
  let tasks: Task[] = [];
  let loadedSig = "";
  let loading = 0;
  let reloadTimer: number | undefined;
  let lastLoad = 0;
  const selected = new Set<number>();

  // ---- the filter bar ----
  const stateSelect = h(
    "select",
    { name: "state", "aria-label": "state", onchange: () => setFilter({ state: stateSelect.value }) },
    h("option", { value: "" }, "any state"),
    TASK_STATES.map((s) => h("option", { value: s }, s)),
  );
  stateSelect.value = filter.state;
  const queueSelect = h("select", {
    name: "queue",
    "aria-label": "queue",
    onchange: () => setFilter({ queue: queueSelect.value }),
  });
  const labelInput = h("input", {
    type: "search",
    name: "label",
    placeholder: "label k=v",
    value: filter.label,
    "aria-label": "label",
    onchange: () => setFilter({ label: labelInput.value.trim() }),
  });
  const search = h("input", {
    type: "search",
    name: "q",
    placeholder: "Search id, command, error…",
    value: filter.q,
    "aria-label": "search",
    oninput: () => {
      filter.q = search.value;
      syncUrl();
      draw();
    },
  });

  const selectionBar = h("div", { class: "selection" });
  const selectionCount = h("span", { class: "sub" });
  const retrySelected: HTMLButtonElement = h(
    "button",
    {
      onclick: () => {
        const ids = selectedWhere((t) => RETRYABLE.has(t.state));
        void act(retrySelected, () => api.post<{ retried: number[] }>("/v1/tasks/retry", { ids }), (r) => {
          selected.clear();
          scheduleReload(0);
          return `Retried ${(r as { retried: number[] }).retried.length} of ${ids.length} tasks`;
        });
      },
    },
    "Retry selected",
  );
  const cancelSelected: HTMLButtonElement = h(
    "button",
    {
      class: "danger",
      onclick: () => {
        const ids = selectedWhere((t) => !FINISHED.has(t.state));
        if (!confirm(`Cancel ${ids.length} tasks? Running ones are killed.`)) return;
        void act(cancelSelected, () => api.post<{ cancelled: number[] }>("/v1/tasks/cancel", { ids }), (r) => {
          selected.clear();
          scheduleReload(0);
          return `Cancelled ${(r as { cancelled: number[] }).cancelled.length} of ${ids.length} tasks`;
        });
      },
    },
    "Cancel selected",
  );
  const retryFailed: HTMLButtonElement = h(
    "button",
    {
      class: "primary",
      onclick: () => {
        const scope = filter.queue ? `in queue ${filter.queue}` : "in every queue";
        if (!confirm(`Retry every failed task ${scope}?`)) return;
        const body = filter.queue ? { failed: true, queue: filter.queue } : { failed: true };
        void act(retryFailed, () => api.post<{ retried: number[] }>("/v1/tasks/retry", body), (r) => {
          scheduleReload(0);
          return `Retried ${(r as { retried: number[] }).retried.length} failed tasks`;
        });
      },
    },
    "Retry all failed",
  );
  const countLine = h("span", { class: "sub" });
  const jump = h("div", { class: "jump" });

  const checkbox = (t: Task) =>
    h("input", {
      type: "checkbox",
      checked: selected.has(t.id),
      "aria-label": `select task ${t.id}`,
      onchange: (e: Event) => {
        if ((e.target as HTMLInputElement).checked) selected.add(t.id);
        else selected.delete(t.id);
        drawSelection();
      },
    });
  const allBox = h("input", {
    type: "checkbox",
    "aria-label": "select all shown",
    onchange: () => {
      for (const t of shown()) {
        if (allBox.checked) selected.add(t.id);
        else selected.delete(t.id);
      }
      draw();
    },
  });

  const table = new KeyedTable<Task>(
    [
      { title: "", class: "check", render: checkbox, key: (t) => `${selected.has(t.id)}` },
      { title: "id", class: "num", render: (t) => link(`/tasks/${t.id}`, `#${t.id}`) },
      { title: "state", render: (t) => pill(t.state, fmt.taskTone(t.state)) },
      { title: "queue", render: (t) => t.queue },
      {
        title: "command",
        class: "cmd",
        render: (t) => h("a", { href: `/tasks/${t.id}`, "data-nav": "", class: "mono", title: fmt.commandText(t.command) }, fmt.commandText(t.command)),
      },
      {
        title: "labels",
        render: (t) => Object.entries(t.labels).map(([k, v]) => h("span", { class: "chip" }, `${k}=${v}`)),
      },
      { title: "tries", class: "num", render: (t) => `${t.attempts}/${t.max_attempts}` },
      { title: "outcome", class: "outcome", render: outcome },
      { title: "created", class: "num", render: (t) => fmt.time(t.created_at) },
      {
        title: "took",
        class: "num",
        render: (t) => fmt.duration(fmt.between(t.started_at, t.finished_at)),
        key: (t) => (t.finished_at ? `${t.started_at}-${t.finished_at}` : `${Math.floor((fmt.between(t.started_at, null) ?? 0) / 1000)}`),
      },
      { title: "worker", class: "num", render: (t) => (t.worker ? String(t.worker) : "") },
    ],
    (t) => String(t.id),
    "No tasks match.",
    (t) => (selected.has(t.id) ? "selected" : ""),
  );
  table.element.querySelector("th.check")?.appendChild(allBox);

  const element = h(
    "div",
    { class: "page" },
    h(
      "section",
      { class: "panel" },
      h(
        "header",
        null,
        h("h2", null, "Tasks"),
        countLine,
        h("div", { class: "spacer" }),
        retryFailed,
      ),
      h("div", { class: "toolbar" }, stateSelect, queueSelect, labelInput, search, jump, h("div", { class: "spacer" }), selectionBar),
      table.element,
    ),
  );

  function outcome(t: Task): HTMLElement | string {
    if (t.state === "cancelled" || t.state === "skipped") return h("span", { class: "sub", title: t.error ?? "" }, t.error ?? t.state);
    if (t.error) return h("span", { class: "bad-text", title: t.error }, t.error);
    if (t.signal !== null) return h("span", { class: "bad-text" }, `signal ${t.signal}`);
    if (t.exit_code !== null) return h("span", { class: t.exit_code === 0 ? "" : "bad-text" }, `exit ${t.exit_code}`);
    return "";
  }

  function shown(): Task[] {
    const q = filter.q.trim().toLowerCase();
    if (!q) return tasks;
    return tasks.filter((t) => {
      const hay = [
        `#${t.id}`,
        fmt.commandText(t.command),
        t.queue,
        t.error ?? "",
        ...Object.entries(t.labels).map(([k, v]) => `${k}=${v}`),
      ]
        .join("\n")
        .toLowerCase();
      return hay.includes(q);
    });
  }

  // The selected tasks an action applies to (retry: finished badly; cancel: unfinished).
  function selectedWhere(applies: (t: Task) => boolean): number[] {
    return tasks.filter((t) => selected.has(t.id) && applies(t)).map((t) => t.id);
  }

  function drawSelection(): void {
    const retry = selectedWhere((t) => RETRYABLE.has(t.state)).length;
    const cancel = selectedWhere((t) => !FINISHED.has(t.state)).length;
    retrySelected.textContent = `Retry ${retry}`;
    retrySelected.hidden = retry === 0;
    cancelSelected.textContent = `Cancel ${cancel}`;
    cancelSelected.hidden = cancel === 0;
    setText(selectionCount, `${selected.size} selected`);
    if (selected.size === 0) selectionBar.replaceChildren();
    else if (!selectionBar.firstChild) selectionBar.replaceChildren(selectionCount, retrySelected, cancelSelected);
    const visible = shown();
    allBox.checked = visible.length > 0 && visible.every((t) => selected.has(t.id));
  }

  function draw(): void {
    const visible = shown();
    table.update(visible);
    const more = tasks.length >= PAGE ? ` (the newest ${PAGE})` : "";
    setText(
      countLine,
      filter.q ? `${visible.length} of ${tasks.length} shown${more}` : `${tasks.length} shown${more}`,
    );
    const id = /^#?(\d+)$/.exec(filter.q.trim());
    replace(jump, id ? link(`/tasks/${id[1]}`, `Open task #${id[1]} →`) : null);
    drawSelection();
  }

  function drawQueues(): void {
    const names = new Set(model.queues.map((x) => x.name));
    if (filter.queue) names.add(filter.queue);
    const sig = [...names].join("\n");
    if (queueSelect.dataset.sig === sig) return;
    queueSelect.dataset.sig = sig;
    replace(queueSelect, h("option", { value: "" }, "any queue"), [...names].sort().map((n) => h("option", { value: n }, n)));
    queueSelect.value = filter.queue;
  }

  function syncUrl(): void {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(filter)) if (v) p.set(k, v);
    const href = `/tasks${p.size ? `?${p}` : ""}`;
    if (location.pathname + location.search !== href) history.replaceState(null, "", href);
  }

  function setFilter(change: Partial<typeof filter>): void {
    Object.assign(filter, change);
    selected.clear();
    syncUrl();
    scheduleReload(0);
  }

  async function load(): Promise<void> {
    const p = new URLSearchParams({ order: "desc", limit: String(PAGE) });
    if (filter.state) p.set("state", filter.state);
    if (filter.queue) p.set("queue", filter.queue);
    if (filter.label) p.set("label", filter.label);
    const mine = ++loading;
    try {
      const got = await api.get<Task[]>(`/v1/tasks?${p}`);
      if (mine !== loading) return; // a newer load is on its way
      tasks = got;
      labelInput.setCustomValidity("");
      draw();
    } catch (e) {
      if (mine !== loading) return;
      if (e instanceof api.ApiError && e.status === 400) {
        labelInput.setCustomValidity(e.message);
        labelInput.reportValidity();
      }
    }
  }

  function scheduleReload(delay?: number): void {
    if (reloadTimer !== undefined && delay !== 0) return;
    window.clearTimeout(reloadTimer);
    const wait = delay ?? Math.max(RELOAD_MS, lastLoad + RELOAD_EVERY_MS - Date.now());
    reloadTimer = window.setTimeout(() => {
      reloadTimer = undefined;
      lastLoad = Date.now();
      void load();
    }, wait);
  }

  // New tasks make no events: the counts tell when the list may have changed.
  const unsubscribe = subscribe(() => {
    const sig = JSON.stringify(model.status?.tasks ?? null);
    if (sig !== loadedSig) {
      loadedSig = sig;
      scheduleReload();
    }
  });
  const unfollow = onEvents((batch) => {
    if (batch.some((e) => e.kind === "task")) scheduleReload();
  });

  drawQueues();
  void load();

  return {
    title: "Tasks",
    element,
    update() {
      drawQueues();
      const failed = model.status?.tasks.failed ?? 0;
      retryFailed.hidden = failed === 0;
    },
    destroy() {
      unsubscribe();
      unfollow();
      window.clearTimeout(reloadTimer);
    },
  };
}

