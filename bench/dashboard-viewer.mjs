// Keeps rota's dashboard open in headless Chromium, signed in, on the overview page, following
// the daemon's events live until told to stop: the browser half of what bench/observed.py calls
// "watched". It launches Chromium the way the browser tests do (tests/browser/harness.mjs; run
// `npm ci` there for playwright-core, `scripts/install-deps browser` for Chromium).
//
// Usage: node bench/dashboard-viewer.mjs URL TOKEN_FILE
// Prints "live" once the page shows that it follows the daemon's events. Stops on SIGTERM,
// SIGINT or the end of its stdin (so it never outlives the bench that started it), then prints
// "closed: STATE, N API requests since live" and exits 0. On failure it prints one line to
// stderr and exits non-zero.

import { readFileSync } from "node:fs";

// Chromium's first start on a busy 2-core machine can take a while.
const LIVE_TIMEOUT = 60_000;

function fail(message) {
  console.error(`dashboard-viewer: ${message}`);
  process.exit(1);
}

async function loadHarness() {
  try {
    return await import("../tests/browser/harness.mjs");
  } catch (e) {
    fail(`cannot load playwright-core (run \`npm ci\` in tests/browser): ${e.message.split("\n")[0]}`);
  }
}

// Resolves on the first of SIGTERM, SIGINT or the end of stdin.
function stopRequested() {
  return new Promise((resolve) => {
    process.once("SIGTERM", resolve);
    process.once("SIGINT", resolve);
    process.stdin.on("end", resolve);
    process.stdin.on("error", resolve);
    process.stdin.resume();
  });
}

// Signs in with the token and waits until the header's link state reads "live".
async function signIn(page, url, token) {
  await page.goto(`${url}/`);
  await page.fill("input[name=token]", token);
  await page.click("form.login button[type=submit]");
  await page.locator("header.top .link-state.live").waitFor({ timeout: LIVE_TIMEOUT });
}

async function main() {
  const [url, tokenFile] = process.argv.slice(2);
  if (!url || !tokenFile) fail("usage: node bench/dashboard-viewer.mjs URL TOKEN_FILE");
  const token = readFileSync(tokenFile, "utf8").trim();
  const stop = stopRequested();
  const { launchBrowser } = await loadHarness();
  const browser = await launchBrowser();
  try {
    const page = await browser.context.newPage();
    const errors = [];
    let requests = null; // counted from "live" on: proof that the page kept reading the API
    page.on("pageerror", (e) => errors.push(e.message));
    page.on("request", (r) => {
      if (requests !== null && new URL(r.url()).pathname.startsWith("/v1/")) requests += 1;
    });
    await signIn(page, url, token);
    requests = 0;
    console.log("live");
    await stop;
    const state = (await page.locator("header.top .link-state").getAttribute("class")) ?? "";
    const shown = state.replace("link-state", "").trim() || "unknown";
    const thrown = errors.length ? `, ${errors.length} page errors (first: ${errors[0]})` : "";
    console.log(`closed: ${shown}, ${requests} API requests since live${thrown}`);
  } finally {
    await browser.close();
  }
}

main().catch((e) => fail(e.message.split("\n")[0]));
