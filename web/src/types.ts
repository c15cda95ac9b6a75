// The shapes of the daemon's JSON replies (docs/api.md).

export const TASK_STATES = [
  "waiting",
  "scheduled",
  "queued",
  "running",
  "succeeded",
  "failed",
  "cancelled",
  "skipped",
] as const;
export type TaskState = (typeof TASK_STATES)[number];
export type StateCounts = Record<TaskState, number>;

export const WORKER_STATES = [
  "starting",
  "idle",
  "working",
  "slow",
  "unresponsive",
  "dead",
  "recovering",
  "stopped",
  "given-up",
] as const;
export type WorkerState = (typeof WORKER_STATES)[number];

export interface Info {
  version: string;
  pid: number;
  home: string;
  workers: number;
  autoscale: { min: number; max: number } | null;
  started_at: string;
  uptime_ms: number;
  healthy: boolean;
  accepting: boolean;
}

export interface Status extends Info {
  tasks: StateCounts;
  last_commit_us: number;
  store_error?: string;
}

export interface Command {
  argv?: string[];
  shell?: string;
  cwd: string;
}

export interface Task {
  id: number;
  state: TaskState;
  queue: string;
  priority: number;
  attempts: number;
  max_attempts: number;
  exit_code: number | null;
  signal: number | null;
  error: string | null;
  labels: Record<string, string>;
  depends_on: number[];
  command: Command;
  timeout_ms: number;
  run_after: string | null;
  created_at: string | null;
  started_at: string | null;
  finished_at: string | null;
  worker: number | null;
  result: unknown;
}

export interface Attempt {
  attempt: number;
  worker: number;
  started_at: string | null;
  finished_at: string | null;
  outcome: string | null;
  exit_code: number | null;
  signal: number | null;
  error: string | null;
}

export interface TaskDetail extends Task {
  attempt_history: Attempt[];
  log: string;
}

export interface Worker {
  id: number;
  slot: number | null;
  pid: number | null;
  state: WorkerState;
  task: number | null;
  uptime_ms: number | null;
  restarts: number;
  tasks_done: number;
  tasks_failed: number;
  heartbeat_age_ms: number | null;
}

export interface Queue {
  name: string;
  paused: boolean;
  limit: number | null;
  counts: StateCounts;
}

export interface Alert {
  time: string;
  alert: string;
  message: string;
  [detail: string]: unknown;
}

export interface Health {
  status: "healthy" | "degraded";
  loop_lag_ms: number;
  store: { path: string; bytes: number; last_commit_us: number; ok: boolean; error?: string };
  pool: { name: string; size: number; state: string; workers_by_state: Record<string, number> };
  alerts_last_hour: Alert[];
}

export interface StatsGroup {
  key: string;
  completed: number;
  failed: number;
  success_rate: number | null;
  retries: number;
  attempts: number;
  duration_ms: { p50: number | null; p95: number | null; max: number | null };
  wait_ms: { mean: number | null; p95: number | null };
  throughput_per_min: number;
}

export interface Stats {
  from: string;
  to: string;
  groups: StatsGroup[];
}

export interface Finding {
  kind: string;
  message: string;
  action: string;
}

export interface Analysis {
  findings: Finding[];
  arrivals_per_min: number;
  completions_per_min: number;
  backlog: number;
}

export interface RotaEvent {
  id: number;
  at: string;
  kind: string;
  task: number | null;
  worker: number | null;
  from: string | null;
  to: string | null;
  detail: string;
}
