// Shared helpers for the dashboard's browser tests: a real rota daemon in a temp home with its
// TCP listener, and Debian's Chromium driven by playwright-core.

import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { chromium } from "playwright-core";

const run = promisify(execFile);
const REPO = resolve(import.meta.dirname, "../..");
export const ROTA_BIN = process.env.ROTA_BIN || join(REPO, "build/rota");
export const SCREENSHOTS = process.env.SCREENSHOTS || join(REPO, "build/screenshots");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const TAG_VAR = "ROTA_BROWSER_TEST_TAG";
// How long any one condition may take before a test fails (the suite itself takes seconds).
export const TIMEOUT = 15_000;

async function freePort() {
  const server = createServer();
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  const { port } = server.address();
  await new Promise((ok) => server.close(ok));
  return port;
}

// One rota home with a daemon of `workers` workers, listening on 127.0.0.1:PORT.
export class Rota {
  static async start(workers = 2) {
    const r = new Rota();
    r.root = mkdtempSync("/tmp/rota-bt-");
    r.home = join(r.root, "home");
    r.work = join(r.root, "work");
    mkdirSync(r.work);
    r.tag = `${process.pid}-${Math.random().toString(16).slice(2)}`;
    r.port = await freePort();
    r.url = `http://127.0.0.1:${r.port}`;
    try {
      await r.cli("daemon", "start", "--workers", workers, "--listen", `127.0.0.1:${r.port}`);
      r.token = readFileSync(join(r.home, "token"), "utf8").trim();
    } catch (e) {
      await r.stop(); // no daemon or home left behind by a start that failed half-way
      throw e;
    }
    return r;
  }

  // `rota --home HOME ARGS...`; its stdout (fails on a non-zero exit).
  async cli(...args) {
    const { stdout } = await run(ROTA_BIN, ["--home", this.home, ...args.map(String)], {
      cwd: this.work,
      env: { ...process.env, NO_COLOR: "1", [TAG_VAR]: this.tag },
      timeout: 30_000,
    });
    return stdout;
  }

  // `rota daemon restart`: workers keep their tasks; the listener comes back on the same port.
  async restart(workers) {
    await this.cli("daemon", "restart", "--workers", workers, "--listen", `127.0.0.1:${this.port}`);
  }

  async json(...args) {
    return JSON.parse(await this.cli(...args, "--json"));
  }

  // Queues a shell command; its task id.
  async add(shell, ...flags) {
    return Number((await this.cli("add", ...flags, "--shell", shell)).trim());
  }

  path(name) {
    return join(this.work, name);
  }

  async stop() {
    try {
      await this.cli("daemon", "stop", "--grace", "1s");
    } catch {
      // already gone: whatever is left is killed below
    }
    for (const pid of taggedProcesses(this.tag)) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // exited meanwhile
      }
    }
    rmSync(this.root, { recursive: true, force: true });
  }
}

// Live processes that carry this run's tag in their environment (the daemon, its workers,
// their tasks).
function taggedProcesses(tag) {
  const needle = `${TAG_VAR}=${tag}`;
  const out = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${name}/environ`, "latin1").split("\0").includes(needle)) out.push(Number(name));
    } catch {
      // gone, or not ours to read
    }
  }
  return out;
}

// Chromium, headless, in a fresh profile, with nothing that reaches out to the network.
export async function launchBrowser() {
  const profile = mkdtempSync(join(tmpdir(), "rota-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1440, height: 900 },
    colorScheme: "light",
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  context.setDefaultTimeout(TIMEOUT);
  const close = async () => {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  };
  return { context, close };
}

// Polls `f` until it returns something truthy; returns that, or fails naming `what`.
export async function until(f, what, timeout = TIMEOUT) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await f();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last value: ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function screenshot(page, name) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.evaluate(() => document.getElementById("toasts")?.replaceChildren()); // they pass anyway
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
}
