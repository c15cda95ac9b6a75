// The dashboard: a sign-in screen, then one page at a time under a header, redrawn live from
// the model (polls and the event stream) without reloads.

import "uplot/dist/uPlot.min.css";
import "./style.css";

import * as api from "./api";
import { h, replace, setText } from "./dom";
import * as fmt from "./format";
import * as live from "./model";
import { model } from "./model";
import { navigate, type Page, type Route } from "./page";
import { alertsPage } from "./pages/alerts";
import { eventsPage } from "./pages/events";
import { overviewPage } from "./pages/overview";
import { queuesPage } from "./pages/queues";
import { taskPage } from "./pages/task";
import { tasksPage } from "./pages/tasks";
import { workersPage } from "./pages/workers";

const app = document.getElementById("app")!;

// ---- theme ----------------------------------------------------------------------------------

const THEME_KEY = "rota.theme";
const THEMES = ["auto", "light", "dark"] as const;
type Theme = (typeof THEMES)[number];
const dark = window.matchMedia("(prefers-color-scheme: dark)");

function theme(): Theme {
  const t = localStorage.getItem(THEME_KEY) as Theme | null;
  return t && THEMES.includes(t) ? t : "auto";
}

function applyTheme(): void {
  const t = theme();
  document.documentElement.dataset.theme = t === "auto" ? (dark.matches ? "dark" : "light") : t;
}
dark.addEventListener("change", () => {
  applyTheme();
  current?.update();
});
applyTheme();

// ---- sign in --------------------------------------------------------------------------------

function signIn(message = ""): void {
  live.stop();
  destroyPage();
  document.title = "Sign in · rota";
  const input = h("input", {
    type: "password",
    name: "token",
    autocomplete: "current-password",
    placeholder: "token",
    "aria-label": "token",
    required: true,
  });
  const error = h("p", { class: "login-error", role: "alert" }, message);
  const button = h("button", { type: "submit", class: "primary" }, "Sign in");
  const form = h(
    "form",
    {
      class: "login",
      onsubmit: async (e: Event) => {
        e.preventDefault();
        const token = input.value.trim();
        button.disabled = true;
        setText(error, "");
        try {
          await api.tryToken(token);
          api.setToken(token);
          showApp();
        } catch (err) {
          const status = err instanceof api.ApiError ? err.status : 0;
          setText(
            error,
            status === 401
              ? "That token was refused (401). Copy it again from $ROTA_HOME/token."
              : `Could not sign in: ${err instanceof Error ? err.message : String(err)}`,
          );
          input.select();
        } finally {
          button.disabled = false;
        }
      },
    },
    h("div", { class: "brand big" }, logo(), "rota"),
    h("h1", null, "Sign in"),
    h(
      "p",
      { class: "sub" },
      "Paste the daemon's token: it is in ",
      h("code", null, "$ROTA_HOME/token"),
      " (",
      h("code", null, "rota info"),
      " prints the home).",
    ),
    input,
    button,
    error,
  );
  replace(app, h("div", { class: "login-wrap" }, form));
  input.focus();
}

api.whenUnauthorized(() => {
  api.setToken("");
  signIn("The daemon no longer accepts this token (401). Sign in again.");
});

// ---- the shell ------------------------------------------------------------------------------

const NAV: [string, string][] = [
  ["/", "Overview"],
  ["/workers", "Workers"],
  ["/queues", "Queues"],
  ["/tasks", "Tasks"],
  ["/alerts", "Alerts"],
  ["/events", "Events"],
];

let current: Page | null = null;
let unsubscribe: (() => void) | null = null;
let main: HTMLElement;
let navLinks: Map<string, { a: HTMLAnchorElement; badge: HTMLElement }>;
let linkState: HTMLElement;
let healthState: HTMLElement;
let version: HTMLElement;
let banner: HTMLElement;

function logo(): SVGElement {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 32 32");
  svg.setAttribute("class", "logo");
  svg.innerHTML =
    '<rect width="32" height="32" rx="7" fill="currentColor"/><path d="M16 7a9 9 0 1 0 9 9" fill="none" stroke="#fff" stroke-width="3.2" stroke-linecap="round"/><path d="M25 9v7h-7" fill="none" stroke="#fff" stroke-width="3.2" stroke-linecap="round" stroke-linejoin="round"/>';
  return svg;
}

function showApp(): void {
  navLinks = new Map();
  const nav = h(
    "nav",
    null,
    NAV.map(([href, label]) => {
      const badge = h("span", { class: "badge", hidden: true });
      const a = h("a", { href, "data-nav": "" }, label, badge);
      navLinks.set(href, { a, badge });
      return a;
    }),
  );
  linkState = h("span", { class: "link-state" });
  healthState = h("span");
  version = h("span", { class: "sub" });
  const themeButton = h("button", {
    class: "icon",
    title: "Theme",
    onclick: () => {
      const next = THEMES[(THEMES.indexOf(theme()) + 1) % THEMES.length];
      localStorage.setItem(THEME_KEY, next);
      applyTheme();
      themeButton.textContent = `theme: ${next}`;
      current?.update();
    },
  }, `theme: ${theme()}`);
  const signOut = h(
    "button",
    {
      class: "icon",
      onclick: () => {
        api.setToken("");
        signIn();
      },
    },
    "Sign out",
  );
  banner = h("div", { class: "banner", hidden: true, role: "alert" });
  main = h("main");
  replace(
    app,
    h(
      "header",
      { class: "top" },
      h("a", { href: "/", "data-nav": "", class: "brand" }, logo(), "rota"),
      nav,
      h("div", { class: "spacer" }),
      healthState,
      linkState,
      version,
      themeButton,
      signOut,
    ),
    banner,
    main,
  );
  unsubscribe?.();
  unsubscribe = live.subscribe(() => {
    drawShell();
    current?.update();
  });
  live.start();
  render();
}

function drawShell(): void {
  const st = model.status;
  const LINK_TEXT = { connecting: "connecting…", live: "live", reconnecting: "reconnecting…", unauthorized: "signed out" };
  linkState.className = `link-state ${model.link}`;
  setText(linkState, LINK_TEXT[model.link]);
  linkState.title = model.link === "live" ? "Following the daemon's events" : "The event stream dropped; trying again";
  const degraded = model.health?.status === "degraded" || (st && !st.healthy);
  const healthSig = `${!!st}|${degraded}`;
  if (healthState.dataset.sig !== healthSig) {
    healthState.dataset.sig = healthSig;
    replace(healthState, st ? h("span", { class: `pill tone-${degraded ? "bad" : "ok"}` }, degraded ? "degraded" : "healthy") : null);
  }
  setText(version, st ? `v${st.version} · up ${fmt.duration(st.uptime_ms)}` : "");
  version.title = st ? `${st.home} (pid ${st.pid})` : "";
  banner.hidden = !model.error;
  setText(banner, model.error ? `The daemon does not answer: ${model.error}. Retrying…` : "");

  const badge = (href: string, n: number, tone: string, title: string) => {
    const b = navLinks.get(href)!.badge;
    b.hidden = n === 0;
    b.className = `badge tone-${tone}`;
    b.title = title;
    setText(b, String(n));
  };
  const sick = model.workers.filter((w) => fmt.workerTone(w.state) === "bad").length;
  badge("/workers", sick, "bad", "workers unresponsive, dead or given up");
  badge("/queues", model.queues.filter((q) => q.paused).length, "warn", "paused queues");
  badge("/tasks", st?.tasks.failed ?? 0, "bad", "failed tasks");
  badge("/alerts", model.health?.alerts_last_hour.length ?? 0, "bad", "alerts in the last hour");
}

// ---- routing --------------------------------------------------------------------------------

const ROUTES: [RegExp, (r: Route) => Page, string][] = [
  [/^\/(index\.html)?$/, overviewPage, "/"],
  [/^\/workers\/?$/, workersPage, "/workers"],
  [/^\/queues\/?$/, queuesPage, "/queues"],
  [/^\/tasks\/?$/, tasksPage, "/tasks"],
  [/^\/tasks\/(\d+)\/?$/, taskPage, "/tasks"],
  [/^\/alerts\/?$/, alertsPage, "/alerts"],
  [/^\/events\/?$/, eventsPage, "/events"],
];

function destroyPage(): void {
  current?.destroy?.();
  current = null;
}

function render(): void {
  if (!api.hasToken()) return signIn();
  destroyPage();
  const path = location.pathname;
  let section = "";
  for (const [re, make, nav] of ROUTES) {
    const m = re.exec(path);
    if (!m) continue;
    current = make({ params: m.slice(1), query: new URLSearchParams(location.search) });
    section = nav;
    break;
  }
  if (!current) {
    current = {
      title: "Not found",
      element: h("div", { class: "page" }, h("section", { class: "panel" }, h("h2", null, "No such page"), h("p", null, h("a", { href: "/", "data-nav": "" }, "Back to the overview")))),
      update() {},
    };
  }
  for (const [href, { a }] of navLinks) a.classList.toggle("active", href === section);
  document.title = `${current.title} · rota`;
  live.need(current.needs ?? []);
  replace(main, current.element);
  drawShell();
  current.update();
}

document.addEventListener("click", (e) => {
  const a = (e.target as Element).closest?.("a[data-nav]") as HTMLAnchorElement | null;
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  e.preventDefault();
  if (a.pathname + a.search !== location.pathname + location.search) navigate(a.pathname + a.search);
});
window.addEventListener("popstate", render);
window.addEventListener("rota:navigate", render);

if (api.hasToken()) showApp();
else signIn();
