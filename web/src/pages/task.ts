// One task: its command and settings, every attempt with exit codes and errors, its events,
// and its output, followed live while it runs; retry and cancel.

import { act } from "../actions";
import * as api from "../api";
import { authHeaders } from "../api";
import { h, KeyedTable, link, pill, replace, setText } from "../dom";
import * as fmt from "../format";
import { model, onEvents, subscribe } from "../model";
import type { Page, Route } from "../page";
import type { Attempt, RotaEvent, TaskDetail } from "../types";

const TERMINAL = new Set(["succeeded", "failed", "cancelled", "skipped"]);
// The output shown at most (the start of a longer one is left out).
const LOG_TAIL = 1 << 20;

export function taskPage(route: Route): Page {
  const id = Number(route.params[0]);
  let task: TaskDetail | null = null;
  let missing = "";

  const title = h("h2", null, `Task #${id}`);
  const statePill = h("span");
  const retryButton: HTMLButtonElement = h(
    "button",
    {
      class: "primary",
      onclick: () =>
        void act(retryButton, () => api.post("/v1/tasks/retry", { ids: [id] }), () => `Task #${id} queued again`).then(() => load()),
    },
    "Retry",
  );
  const cancelButton: HTMLButtonElement = h(
    "button",
    {
      class: "danger",
      onclick: () => {
        if (!confirm(`Cancel task #${id}?${task?.state === "running" ? " Its processes are killed." : ""}`)) return;
        void act(cancelButton, () => api.post("/v1/tasks/cancel", { ids: [id] }), () => `Task #${id} cancelled`).then(() => load());
      },
    },
    "Cancel",
  );
  const command = h("pre", { class: "command" });
  const facts = h("div", { class: "facts" });

  const attempts = new KeyedTable<Attempt>(
    [
      { title: "#", class: "num", render: (a) => String(a.attempt) },
      { title: "worker", class: "num", render: (a) => String(a.worker) },
      { title: "started", class: "num", render: (a) => fmt.time(a.started_at) },
      { title: "finished", class: "num", render: (a) => fmt.time(a.finished_at) },
      {
        title: "took",
        class: "num",
        render: (a) => fmt.duration(fmt.between(a.started_at, a.finished_at)),
        key: (a) => (a.finished_at ? `${a.finished_at}` : `${Math.floor((fmt.between(a.started_at, null) ?? 0) / 1000)}`),
      },
      { title: "outcome", render: (a) => pill(a.outcome ?? "running", fmt.outcomeTone(a.outcome)) },
      { title: "exit", class: "num", render: (a) => (a.exit_code === null ? "–" : String(a.exit_code)) },
      { title: "signal", class: "num", render: (a) => (a.signal === null ? "–" : String(a.signal)) },
      { title: "error", class: "wrap", render: (a) => (a.error ? h("span", { class: "bad-text" }, a.error) : "") },
    ],
    (a) => String(a.attempt),
    "No attempt yet.",
  );

  const eventsTable = new KeyedTable<RotaEvent>(
    [
      { title: "time", class: "num", render: (e) => fmt.time(e.at) },
      { title: "change", render: (e) => transition(e) },
      { title: "worker", class: "num", render: (e) => (e.worker ? String(e.worker) : "") },
      { title: "detail", class: "wrap", render: (e) => e.detail },
    ],
    (e) => String(e.id),
    "No events for this task among the recent ones.",
  );

  // ---- the log ----
  const logView = h("pre", { class: "log", tabIndex: 0 });
  const logState = h("span", { class: "sub" });
  let logEnd: number | null = null; // where the next read starts; null: read the tail
  let logAttempts = -1;
  let logBusy = false;
  let decoder = new TextDecoder();
  let logText = "";

  async function readLog(): Promise<void> {
    if (logBusy || !task) return;
    logBusy = true;
    try {
      if (task.attempts !== logAttempts) {
        // A new attempt: read the tail again rather than trust an offset into an older log.
        logAttempts = task.attempts;
        logEnd = null;
        logText = "";
        decoder = new TextDecoder();
      }
      const offset = logEnd === null ? -LOG_TAIL : logEnd;
      const res = await fetch(`/v1/tasks/${id}/log?offset=${offset}`, { headers: authHeaders(), cache: "no-store" });
      if (!res.ok) return;
      const end = Number(res.headers.get("X-Log-End"));
      const chunk = decoder.decode(await res.arrayBuffer(), { stream: true });
      if (logEnd === null && end > LOG_TAIL) logText = `… the first ${fmt.bytes(end - LOG_TAIL)} are not shown\n`;
      logEnd = Number.isFinite(end) ? end : null;
      if (chunk) {
        const atBottom = logView.scrollTop + logView.clientHeight >= logView.scrollHeight - 4;
        logText += chunk;
        if (logText.length > LOG_TAIL * 2) logText = logText.slice(-LOG_TAIL);
        logView.textContent = logText;
        if (atBottom) logView.scrollTop = logView.scrollHeight;
      } else if (!logText) {
        logView.textContent = "";
      }
      logView.classList.toggle("empty", logText === "");
    } finally {
      logBusy = false;
    }
  }

  const element = h(
    "div",
    { class: "page task" },
    h(
      "section",
      { class: "panel" },
      h("header", null, h("a", { href: "/tasks", "data-nav": "", class: "back" }, "← Tasks"), title, statePill, h("div", { class: "spacer" }), retryButton, cancelButton),
      command,
      facts,
    ),
    h("section", { class: "panel" }, h("header", null, h("h2", null, "Attempts")), attempts.element),
    h("section", { class: "panel" }, h("header", null, h("h2", null, "Output"), logState), logView),
    h("section", { class: "panel" }, h("header", null, h("h2", null, "Events")), eventsTable.element),
  );

  function transition(e: RotaEvent): HTMLElement {
    return h("span", { class: "transition" }, e.from ? pill(e.from, fmt.taskTone(e.from)) : "", e.from ? " → " : "", e.to ? pill(e.to, fmt.taskTone(e.to)) : e.kind);
  }

  function fact(name: string, value: Node | string | null): Node {
    return h("div", { class: "fact" }, h("span", { class: "k" }, name), h("span", { class: "v" }, value ?? "–"));
  }

  function draw(): void {
    if (missing) {
      replace(facts);
      setText(command, missing);
      retryButton.hidden = cancelButton.hidden = true;
      return;
    }
    if (!task) return;
    const t = task;
    replace(statePill, pill(t.state, fmt.taskTone(t.state)));
    setText(command, `${fmt.commandText(t.command)}`);
    const terminal = TERMINAL.has(t.state);
    retryButton.hidden = !terminal || t.state === "succeeded";
    cancelButton.hidden = terminal;
    const sig = JSON.stringify([t, Math.floor(Date.now() / 1000)]);
    if (facts.dataset.sig !== sig) {
      facts.dataset.sig = sig;
      replace(
        facts,
        fact("queue", link(`/tasks?queue=${encodeURIComponent(t.queue)}`, t.queue)),
        fact("priority", String(t.priority)),
        fact("attempts", `${t.attempts} of ${t.max_attempts}`),
        fact("worker", t.worker ? String(t.worker) : null),
        fact("cwd", h("span", { class: "mono" }, t.command.cwd)),
        fact("labels", Object.keys(t.labels).length ? h("span", null, Object.entries(t.labels).map(([k, v]) => h("span", { class: "chip" }, `${k}=${v}`))) : null),
        fact("depends on", t.depends_on.length ? h("span", null, t.depends_on.flatMap((d) => [link(`/tasks/${d}`, `#${d}`), " "])) : null),
        fact("timeout", t.timeout_ms ? fmt.duration(t.timeout_ms) : "none"),
        fact("created", fmt.time(t.created_at)),
        fact("started", fmt.time(t.started_at)),
        fact("finished", fmt.time(t.finished_at)),
        fact("took", fmt.duration(fmt.between(t.started_at, t.finished_at))),
        t.run_after ? fact("runs after", fmt.time(t.run_after)) : [],
        fact("exit code", t.exit_code === null ? null : String(t.exit_code)),
        t.signal !== null ? fact("signal", String(t.signal)) : [],
        t.error ? fact("error", h("span", { class: "bad-text" }, t.error)) : [],
        t.result !== null && t.result !== undefined ? fact("result", h("code", null, JSON.stringify(t.result))) : [],
      );
    }
    attempts.update(t.attempt_history);
    eventsTable.update(model.events.filter((e) => e.task === id).reverse());
    setText(logState, t.state === "running" ? "following live" : logText ? "" : "no output");
  }

  let loadBusy = false;
  async function load(): Promise<void> {
    if (loadBusy) return;
    loadBusy = true;
    try {
      task = await api.get<TaskDetail>(`/v1/tasks/${id}`);
      missing = "";
    } catch (e) {
      if (e instanceof api.ApiError && e.status === 404) missing = `Task #${id} does not exist (or was cleaned).`;
    } finally {
      loadBusy = false;
    }
    draw();
    await readLog();
    draw();
  }

  const unfollow = onEvents((batch) => {
    if (batch.some((e) => e.task === id)) void load();
  });
  // While it runs, its output grows without events: read it on every poll.
  const unsubscribe = subscribe(() => {
    if (task && !TERMINAL.has(task.state)) void load();
  });
  void load();

  return {
    title: `Task #${id}`,
    element,
    update: draw,
    destroy() {
      unfollow();
      unsubscribe();
    },
  };
}
