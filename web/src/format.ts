// How numbers, times and states are written on the page.

import type { Command, TaskState, WorkerState } from "./types";

export function duration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !isFinite(ms)) return "–";
  if (ms === 0) return "0ms";
  if (ms < 1) return `${ms.toFixed(2)}ms`;
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = ms / 1000;
  if (s < 10) return `${s.toFixed(2)}s`;
  if (s < 60) return `${s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(Math.floor(s % 60)).padStart(2, "0")}s`;
  const hrs = Math.floor(m / 60);
  if (hrs < 48) return `${hrs}h ${String(m % 60).padStart(2, "0")}m`;
  return `${Math.floor(hrs / 24)}d ${hrs % 24}h`;
}

export function count(n: number | null | undefined): string {
  if (n === null || n === undefined) return "–";
  return n.toLocaleString("en-US");
}

export function rate(n: number): string {
  if (Number.isInteger(n)) return n.toLocaleString("en-US");
  if (n < 10) return n.toFixed(1);
  return Math.round(n).toLocaleString("en-US");
}

export function percent(x: number | null | undefined, digits = 1): string {
  if (x === null || x === undefined) return "–";
  return `${(x * 100).toFixed(digits)}%`;
}

export function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n < 10 && i > 0 ? n.toFixed(1) : Math.round(n)} ${units[i]}`;
}

// "14:03:07" today, "Nov 23 14:03" before.
export function time(iso: string | null | undefined): string {
  if (!iso) return "–";
  const d = new Date(iso);
  const now = new Date();
  const hms = d.toLocaleTimeString("en-GB", { hour12: false });
  if (d.toDateString() === now.toDateString()) return hms;
  return `${d.toLocaleDateString("en-US", { month: "short", day: "numeric" })} ${hms.slice(0, 5)}`;
}

export function ago(iso: string | null | undefined): string {
  if (!iso) return "–";
  return `${duration(Math.max(0, Date.now() - Date.parse(iso)))} ago`;
}

export function between(from: string | null, to: string | null): number | null {
  if (!from) return null;
  return (to ? Date.parse(to) : Date.now()) - Date.parse(from);
}

export function commandText(c: Command): string {
  if (c.shell !== undefined) return c.shell;
  return (c.argv ?? []).map(quote).join(" ");
}

function quote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

export function taskTone(s: TaskState | string): string {
  switch (s) {
    case "succeeded":
      return "ok";
    case "failed":
      return "bad";
    case "running":
      return "run";
    case "queued":
      return "info";
    case "scheduled":
    case "waiting":
      return "wait";
    default:
      return "muted";
  }
}

export function workerTone(s: WorkerState | string): string {
  switch (s) {
    case "idle":
    case "working":
      return "ok";
    case "slow":
    case "recovering":
      return "warn";
    case "unresponsive":
    case "dead":
    case "given-up":
      return "bad";
    case "starting":
      return "info";
    default:
      return "muted";
  }
}

export function outcomeTone(outcome: string | null): string {
  if (outcome === null) return "run";
  if (outcome === "succeeded") return "ok";
  if (outcome === "cancelled" || outcome === "interrupted") return "muted";
  return "bad";
}
