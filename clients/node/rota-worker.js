'use strict';
/**
 * A rota user-pool worker in a few lines of Node.js (20 or later, no dependencies).
 *
 *   const rota = require('./rota-worker');
 *   rota.run(async (payload) => ({ words: payload.text.split(/\s+/).filter(Boolean).length }));
 *
 * `rota pool add words --cmd 'node worker.js'` starts copies of such a program, and the daemon
 * speaks the protocol of docs/protocol.md ("User pools") with each over its stdin and stdout.
 * `run` speaks it for you:
 *
 * - It says hello with the concurrency K: `options.concurrency` if given, never above
 *   $ROTA_CONCURRENCY; else $ROTA_CONCURRENCY; else 1. Up to K handlers are in flight at once.
 * - `handler(payload, ctx)` is called for each task, and may be async. What it returns (or its
 *   promise resolves to) is the task's result: any JSON value, undefined or null for none. A
 *   throw or a rejection fails the attempt, which is retried under the task's retry policy;
 *   `throw new rota.Permanent('why')` fails it without a retry. A handler that returns after
 *   its task was cancelled fails the attempt with the error "cancelled".
 * - `ctx.task`, `ctx.attempt` and `ctx.deadlineMs` (Unix ms, 0: none) describe the attempt;
 *   `ctx.signal` is an AbortSignal aborted when the daemon cancels the task (its timeout, or a
 *   user's cancel): pass it to fetch() and friends, or check `ctx.signal.aborted`.
 *   `ctx.progress(0.5, 'halfway')` reports progress.
 * - A heartbeat goes out every $ROTA_HEARTBEAT_MS ms (default 1000) from a timer. A handler
 *   that computes synchronously for long blocks the event loop, and so the heartbeats and the
 *   cancels: past the daemon's `dead_after` the worker looks dead and is killed. Keep handlers
 *   async, and move long computations to a worker thread or a child process.
 * - On `shutdown` (or SIGTERM, with a grace of 5 s) it takes no new task, waits for the
 *   handlers in flight up to the grace (even if stdin ends meanwhile), and exits 0. When stdin
 *   ends without a shutdown (the daemon is gone) it exits 0 at once.
 *
 * stdout belongs to the protocol. `run` keeps process.stdout's write for itself and points
 * process.stdout.write, and so console.log, at stderr, which the daemon keeps in the worker's
 * log. Node cannot move descriptor 1 itself: a child process started with stdio 'inherit'
 * still writes into the protocol stream; give it ['ignore', 2, 2] or 'pipe' instead.
 * Output is written once per turn of the event loop, so results that are ready together go
 * out in one write.
 */

const kProtocol = 1;
const kSigtermGraceMs = 5000;
// setTimeout fires at once beyond this; a longer grace (a pool that shrinks sends a year) is
// "after the handlers in flight" in practice.
const kLongestTimerMs = 2 ** 31 - 1;
const kFinish = Symbol('finish');

/** Throw in a handler to fail the task at once, without a retry (`retryable: false`). */
class Permanent extends Error {
  constructor(message) {
    super(message);
    this.name = 'Permanent';
  }
}

/** The attempt a handler runs. */
class Context {
  #send;
  #finished = false;

  constructor(message, signal, send) {
    this.task = message.task;
    this.attempt = numberField(message, 'attempt', 1);
    this.deadlineMs = numberField(message, 'deadline_ms', 0);
    this.signal = signal;
    this.#send = send;
  }

  /** Reports progress (0..1, clamped) and an optional message in a heartbeat for this task.
   *  Does nothing once the handler has returned. */
  progress(fraction, message) {
    if (this.#finished) return;
    const progress = Math.min(1, Math.max(0, fraction));
    const beat = { type: 'heartbeat', task: this.task, progress };
    if (message !== undefined && message !== null) beat.message = String(message);
    this.#send(JSON.stringify(beat));
  }

  [kFinish]() {
    this.#finished = true;
  }
}

/** Protocol lines, written once per turn of the event loop. */
class Output {
  #write;
  #lines = [];
  #scheduled = false;

  constructor(write) {
    this.#write = write;
  }

  send(line) {
    this.#lines.push(line);
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => this.flush());
  }

  flush() {
    this.#scheduled = false;
    if (this.#lines.length === 0) return;
    const data = this.#lines.join('\n') + '\n';
    this.#lines = [];
    this.#write(data);
  }
}

class Worker {
  #handler;
  #k;
  #output;
  #running = new Map(); // task id -> { ctx, controller }
  #waiting = []; // tasks beyond K (a daemon should not send them, but they are kept)
  #shuttingDown = false;
  #buffer = '';
  #heartbeat = null;
  #dispatch = new Map([
    ['task', (m) => this.#onTask(m)],
    ['cancel', (m) => this.#onCancel(m)],
    ['shutdown', (m) => this.#beginShutdown(numberField(m, 'grace_ms', 0))],
    ['error', (m) => this.#onError(m)],
  ]);

  constructor(handler, k, output) {
    this.#handler = handler;
    this.#k = k;
    this.#output = output;
  }

  start(stdin, heartbeatMs) {
    // Listening first: the daemon may act as soon as it reads hello.
    process.on('SIGTERM', () => this.#beginShutdown(kSigtermGraceMs));
    stdin.setEncoding('utf8');
    stdin.on('data', (chunk) => this.#onData(chunk));
    stdin.on('end', () => this.#shuttingDown || this.#exit()); // the daemon is gone
    this.#output.send(JSON.stringify({ type: 'hello', protocol: kProtocol, concurrency: this.#k }));
    this.#output.flush(); // before any heartbeat
    const beat = JSON.stringify({ type: 'heartbeat' });
    this.#heartbeat = setInterval(() => this.#output.send(beat), heartbeatMs);
  }

  #onData(chunk) {
    this.#buffer += chunk;
    const end = this.#buffer.lastIndexOf('\n');
    if (end < 0) return;
    const lines = this.#buffer.slice(0, end).split('\n');
    this.#buffer = this.#buffer.slice(end + 1);
    for (const line of lines) this.#onLine(line);
  }

  #onLine(line) {
    if (line.trim() === '') return;
    let message;
    try {
      message = JSON.parse(line);
    } catch {
      message = null;
    }
    if (message === null || typeof message !== 'object' || Array.isArray(message)) {
      log(`ignoring a line that is not a JSON object: ${line.slice(0, 200)}`);
      return;
    }
    this.#dispatch.get(message.type)?.(message); // an unknown type: a newer daemon may send more
  }

  #onTask(message) {
    if (this.#shuttingDown) {
      this.#output.send(failLine(message.task, 'the worker is shutting down', true));
    } else if (this.#running.size < this.#k) {
      this.#start(message);
    } else {
      this.#waiting.push(message);
    }
  }

  #start(message) {
    const controller = new AbortController();
    const ctx = new Context(message, controller.signal, (line) => this.#output.send(line));
    this.#running.set(ctx.task, { ctx, controller });
    let outcome;
    try {
      outcome = Promise.resolve(this.#handler(message.payload ?? null, ctx));
    } catch (error) {
      outcome = Promise.reject(error);
    }
    outcome.then(
      (result) => this.#finish(ctx, doneLine(ctx, result)),
      (error) => this.#finish(ctx, errorLine(ctx.task, error)),
    );
  }

  #finish(ctx, line) {
    ctx[kFinish]();
    this.#output.send(line);
    if (this.#running.get(ctx.task)?.ctx === ctx) this.#running.delete(ctx.task);
    if (this.#waiting.length > 0) this.#start(this.#waiting.shift());
    if (this.#shuttingDown && this.#running.size === 0) this.#exit();
  }

  #onCancel(message) {
    this.#running.get(message.task)?.controller.abort();
    const queued = this.#waiting.findIndex((m) => m.task === message.task);
    if (queued >= 0) {
      this.#waiting.splice(queued, 1);
      this.#output.send(failLine(message.task, 'cancelled', true));
    }
  }

  #onError(message) {
    const line = 'line' in message ? ` (line: ${JSON.stringify(message.line)})` : '';
    log(`the daemon could not read a line of ours: ${message.error}${line}`);
  }

  /** Takes no new task from now on, and gives those in flight `graceMs` to finish. */
  #beginShutdown(graceMs) {
    if (this.#shuttingDown) return;
    this.#shuttingDown = true;
    for (const message of this.#waiting.splice(0)) {
      this.#output.send(failLine(message.task, 'the worker is shutting down', true));
    }
    if (this.#running.size === 0) {
      this.#exit();
    } else if (graceMs <= kLongestTimerMs) {
      setTimeout(() => this.#exit(), Math.max(0, graceMs));
    }
  }

  #exit() {
    clearInterval(this.#heartbeat);
    this.#output.flush(); // pipes and sockets on stdout are written synchronously on Linux
    process.exit(0);
  }
}

/**
 * Serves tasks with `handler(payload, ctx)` until shutdown or the end of stdin, then exits the
 * process with 0. Throws a RangeError if `options.concurrency` is below 1.
 * REQUIRES: called once, before anything is written to stdout.
 */
function run(handler, options = {}) {
  const k = concurrency(options.concurrency);
  const output = new Output(takeStdout());
  new Worker(handler, k, output).start(process.stdin, envInt('ROTA_HEARTBEAT_MS', 1000));
}

/** Returns process.stdout's write for the protocol; anything else written there goes to stderr. */
function takeStdout() {
  const stdout = process.stdout;
  const write = stdout.write.bind(stdout);
  stdout.write = process.stderr.write.bind(process.stderr);
  stdout.on('error', () => process.exit(0)); // EPIPE: the daemon is gone
  return write;
}

function concurrency(requested) {
  const limit = envInt('ROTA_CONCURRENCY', null);
  if (requested === undefined || requested === null) return limit ?? 1;
  if (!Number.isInteger(requested) || requested < 1) {
    throw new RangeError(`concurrency must be an integer of at least 1, not ${requested}`);
  }
  return limit === null ? requested : Math.min(requested, limit);
}

function envInt(name, fallback) {
  const text = process.env[name];
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (Number.isInteger(value) && value >= 1) return value;
  log(`ignoring ${name}=${JSON.stringify(text)}: not a positive integer`);
  return fallback;
}

function numberField(message, name, fallback) {
  return typeof message[name] === 'number' ? message[name] : fallback;
}

function doneLine(ctx, result) {
  if (ctx.signal.aborted) return failLine(ctx.task, 'cancelled', true);
  const message = { type: 'done', task: ctx.task };
  if (result !== undefined && result !== null) message.result = result;
  try {
    return JSON.stringify(message);
  } catch (error) {
    return failLine(ctx.task, `the result is not JSON: ${error.message}`, false);
  }
}

function errorLine(task, error) {
  if (error instanceof Permanent) return failLine(task, error.message || 'Permanent', false);
  log(`task ${task} failed: ${error instanceof Error ? error.stack : String(error)}`);
  const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return failLine(task, text, true);
}

function failLine(task, error, retryable) {
  return JSON.stringify({ type: 'fail', task, error, retryable });
}

function log(text) {
  process.stderr.write(`rota-worker: ${text}\n`);
}

module.exports = { run, Permanent, Context };
