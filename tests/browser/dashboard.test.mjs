// The dashboard as a user sees it, in Chromium, against a real daemon: sign in, watch workers
// and tasks change live, and act on them (retry, cancel, scale, restart, pause, resume).
// The tests run in order on one daemon and one page, which is never reloaded after sign-in.

import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";

import { launchBrowser, Rota, screenshot, until } from "./harness.mjs";

describe("the dashboard", () => {
  let rota;
  let browser;
  let page;
  const pageErrors = [];

  before(async () => {
    rota = await Rota.start(2);
    browser = await launchBrowser();
    page = await browser.context.newPage();
    page.on("dialog", (d) => d.accept()); // the confirmations before retry-all, restart, cancel
    page.on("pageerror", (e) => pageErrors.push(e.message));
  });

  after(async () => {
    await browser?.close();
    await rota?.stop();
  });

  const nav = (href) => page.click(`header.top nav a[href="${href}"]`);
  const row = (key) => page.locator(`main tr[data-key="${key}"]`);
  const statePill = () => page.locator(".task .panel > header .pill");
  const section = (title) => page.locator(`section.panel:has(h2:text-is("${title}"))`);

  async function notReloaded() {
    assert.equal(await page.evaluate(() => window.rotaSignedIn), true, "the page was reloaded");
    assert.deepEqual(pageErrors, [], "the page threw");
  }

  // A wrong token gets a clear refusal and no data; the right one opens the overview.
  it("refuses a wrong token and signs in with the right one", async () => {
    await page.goto(`${rota.url}/`);
    await page.fill("input[name=token]", "not-the-token");
    await page.click("form.login button[type=submit]");
    await page.locator(".login-error", { hasText: "refused (401)" }).waitFor();
    assert.equal(await page.locator("header.top nav").count(), 0);
    await screenshot(page, "login-refused");

    await page.fill("input[name=token]", rota.token);
    await page.click("form.login button[type=submit]");
    await page.locator("header.top .link-state.live").waitFor();
    await page.locator('.tile[data-state="succeeded"] .tile-value', { hasText: "0" }).waitFor();
    await page.evaluate(() => {
      window.rotaSignedIn = true; // gone if the page ever reloads
    });
  });

  // Every worker of the pool is listed with its pid and health.
  it("lists the workers with their health", async () => {
    await nav("/workers");
    const workers = await rota.json("workers");
    assert.equal(workers.length, 2);
    for (const w of workers) {
      await row(w.id).locator("td", { hasText: new RegExp(`^${w.pid}$`) }).waitFor();
      await row(w.id).locator(".pill", { hasText: "idle" }).waitFor();
    }
    await screenshot(page, "workers");
  });

  // Tasks queued from the CLI appear, run and finish on the open page, with no reload.
  it("shows queued tasks run and finish live", async () => {
    await nav("/tasks");
    const gate = rota.path("gate-live");
    const ids = [];
    for (let i = 1; i <= 3; i++) {
      ids.push(await rota.add(`while [ ! -e ${gate} ]; do sleep 0.02; done; echo task ${i}`, "--label", "suite=live"));
    }
    // Two workers: the first two run, the third waits its turn.
    await row(ids[0]).locator(".pill", { hasText: "running" }).waitFor();
    await row(ids[1]).locator(".pill", { hasText: "running" }).waitFor();
    await row(ids[2]).locator(".pill", { hasText: "queued" }).waitFor();
    writeFileSync(gate, "");
    for (const id of ids) await row(id).locator(".pill", { hasText: "succeeded" }).waitFor();

    await nav("/");
    await page.locator('.tile[data-state="succeeded"] .tile-value', { hasText: "3" }).waitFor();
    await notReloaded();
  });

  // A task's page follows its output while it runs, then shows the failed attempt's exit code
  // and error; Retry runs it again, and the second attempt's success shows.
  it("shows a task's live output and attempts, and retries it", async () => {
    const gate = rota.path("gate-log");
    const fixed = rota.path("fixed-log");
    const id = await rota.add(
      `echo first line; while [ ! -e ${gate} ]; do sleep 0.02; done; echo second line; ` +
        `[ -e ${fixed} ] || { echo broken >&2; exit 3; }`,
    );
    await nav("/tasks");
    await row(id).locator(`a[href="/tasks/${id}"]`).first().click();
    await statePill().filter({ hasText: "running" }).waitFor();
    await page.locator("pre.log", { hasText: "first line" }).waitFor();
    assert.equal(await page.locator("pre.log", { hasText: "second line" }).count(), 0);

    writeFileSync(gate, "");
    await statePill().filter({ hasText: "failed" }).waitFor();
    await page.locator("pre.log", { hasText: /second line[\s\S]*broken/ }).waitFor();
    const first = section("Attempts").locator('tr[data-key="1"]');
    await first.locator(".pill", { hasText: "failed" }).waitFor();
    await first.locator("td:nth-child(7)", { hasText: /^3$/ }).waitFor(); // the exit code
    await first.locator("td", { hasText: "exit status 3" }).waitFor();
    await screenshot(page, "task-failed");

    writeFileSync(fixed, "");
    await page.click(".task button:text-is('Retry')");
    await statePill().filter({ hasText: "succeeded" }).waitFor();
    await section("Attempts").locator('tr[data-key="2"] .pill', { hasText: "succeeded" }).waitFor();
    const task = await rota.json("show", id);
    assert.equal(task.state, "succeeded");
    assert.equal(task.attempts, 2);
    await screenshot(page, "task-retried");
    await notReloaded();
  });

  // "Retry all failed" in a queue's view retries that queue's failed tasks at once.
  it("retries every failed task of a queue at once", async () => {
    const fixed = rota.path("fixed-bulk");
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push(await rota.add(`[ -e ${fixed} ]`, "--queue", "bulk", "--label", `n=${i}`));
    await until(async () => (await rota.json("list", "--queue", "bulk", "--state", "failed")).length === 3, "3 failed tasks in queue bulk");

    await nav("/tasks");
    await page.selectOption("select[name=queue]", "bulk");
    for (const id of ids) await row(id).locator(".pill", { hasText: "failed" }).waitFor();
    assert.equal(await page.locator("main tbody tr[data-key]").count(), 3);
    await screenshot(page, "tasks-failed");

    writeFileSync(fixed, "");
    await page.click("button:text-is('Retry all failed')");
    for (const id of ids) await row(id).locator(".pill", { hasText: "succeeded" }).waitFor();
    assert.equal((await rota.json("list", "--queue", "bulk", "--state", "succeeded")).length, 3);
    await notReloaded();
  });

  // A running task selected in the list can be cancelled; its row says so.
  it("cancels a selected running task", async () => {
    const id = await rota.add("sleep 600");
    await page.selectOption("select[name=queue]", "");
    await row(id).locator(".pill", { hasText: "running" }).waitFor();
    await row(id).locator("input[type=checkbox]").check();
    await page.click(".selection button:text-is('Cancel 1')");
    await row(id).locator(".pill", { hasText: "cancelled" }).waitFor();
    assert.equal((await rota.json("show", id)).state, "cancelled");
  });

  // Scaling from the Workers page changes the pool; Restart replaces a worker in its slot.
  it("scales the pool and restarts a worker", async () => {
    await nav("/workers");
    await page.fill("input[name=workers]", "3");
    await page.click("button:text-is('Scale')");
    await until(async () => (await page.locator("main tbody tr[data-key]").count()) === 3, "3 worker rows");
    await until(async () => (await rota.json("workers")).length === 3, "3 workers (rota workers)");
    for (const w of await rota.json("workers")) await row(w.id).locator(".pill", { hasText: "idle" }).waitFor();

    const victim = (await rota.json("workers"))[0];
    await row(victim.id).locator("button:text-is('Restart')").click();
    await until(
      async () => (await rota.json("workers")).find((w) => w.slot === victim.slot && w.id !== victim.id && w.restarts === 1),
      `a new worker in slot ${victim.slot}`,
    );
    await row(victim.id).waitFor({ state: "detached" });
    const replacement = (await rota.json("workers")).find((w) => w.slot === victim.slot);
    await row(replacement.id).locator("td:nth-child(7)", { hasText: /^1$/ }).waitFor(); // restarts
    await screenshot(page, "workers-scaled");
    await notReloaded();
  });

  // A paused queue starts nothing new; once resumed, what waited in it runs. Its limit is set
  // from the same row.
  it("pauses and resumes a queue, and limits it", async () => {
    const first = await rota.add("true", "--queue", "reports");
    await rota.cli("wait", first);
    await nav("/queues");
    const reports = row("reports");
    await reports.locator("button:text-is('Pause')").click();
    await reports.locator(".pill", { hasText: "paused" }).waitFor();
    assert.equal((await rota.json("queue", "list")).find((q) => q.name === "reports").paused, true);

    const held = await rota.add("echo held", "--queue", "reports");
    await reports.locator("td:nth-child(4)", { hasText: /^1$/ }).waitFor(); // queued: 1
    assert.equal((await rota.json("show", held)).state, "queued");
    await screenshot(page, "queues-paused");

    await reports.locator("button:text-is('Resume')").click();
    await reports.locator(".pill", { hasText: "active" }).waitFor();
    await reports.locator("td:nth-child(6)", { hasText: /^2$/ }).waitFor(); // succeeded: 2
    assert.equal((await rota.json("show", held)).state, "succeeded");

    await reports.locator("input[type=number]").fill("2");
    await reports.locator("button:text-is('Set')").click();
    await until(async () => (await rota.json("queue", "list")).find((q) => q.name === "reports").limit === 2, "limit 2 on reports");
    await notReloaded();
  });

  // The restart above raised alerts; they, and the events, are on their pages.
  it("shows alerts and events", async () => {
    await nav("/alerts");
    await page.locator("main .pill", { hasText: "worker_restarted" }).first().waitFor();
    await screenshot(page, "alerts");
    await nav("/events");
    await page.locator("main tbody tr[data-key]").first().waitFor();
    const id = await rota.add("echo evented");
    await page.locator(`main tbody tr:has(a[href="/tasks/${id}"])`).first().waitFor();
    await screenshot(page, "events");
    await nav("/");
    await page.locator(".charts .uplot").first().waitFor();
    await screenshot(page, "overview");
    await notReloaded();
  });

  // When the daemon restarts, the page reconnects by itself and goes on showing what happens.
  it("keeps following the daemon across a restart", async () => {
    await nav("/tasks");
    await rota.restart(3);
    const id = await rota.add("echo after the restart");
    await row(id).locator(".pill", { hasText: "succeeded" }).waitFor();
    await page.locator("header.top .link-state.live").waitFor();
    await nav("/events");
    await page.locator(`main tbody tr:has(a[href="/tasks/${id}"]) .pill`, { hasText: "succeeded" }).waitFor();
    await notReloaded();
  });

  // The dark theme follows the system's preference; the charts take its colours.
  it("follows the system's dark theme", async () => {
    await nav("/");
    await page.emulateMedia({ colorScheme: "dark" });
    await until(async () => (await page.evaluate(() => document.documentElement.dataset.theme)) === "dark", "the dark theme");
    await page.locator(".charts .uplot").first().waitFor();
    await screenshot(page, "overview-dark");
    await nav("/tasks");
    await page.selectOption("select[name=queue]", "");
    await page.locator("main tbody tr[data-key]").first().waitFor();
    await screenshot(page, "tasks-dark");
    await notReloaded();
  });
});
