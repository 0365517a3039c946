// Drives the status page in a real Chromium (Debian's) through playwright-core.
// Run by TestStatusPageInBrowser, which starts the gateway and its devices:
//
//   PLAYWRIGHT_CORE=.../node_modules/playwright-core STATUS_URL=http://127.0.0.1:PORT/ \
//   SCREENSHOT=.../status-page.png node status_page.mjs
//
// It prints "loaded" once the page is live (the test then starts a new device),
// waits for the device to appear and its value to change, takes a screenshot and
// prints "ok". Any failure exits non-zero with the reason.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const { chromium } = await import(pathToFileURL(join(process.env.PLAYWRIGHT_CORE, "index.mjs")).href);
const url = process.env.STATUS_URL;
const shot = process.env.SCREENSHOT;
const device = process.env.DEVICE || "fryer-2";
const timeout = 20000;

const profile = mkdtempSync(join(tmpdir(), "edgegate-chromium-"));
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  viewport: { width: 1400, height: 1000 },
  timeout,
});
let code = 0;
try {
  const page = ctx.pages()[0] || (await ctx.newPage());
  const problems = [];
  page.on("pageerror", (e) => problems.push("page error: " + e.message));
  page.on("console", (m) => { if (m.type() === "error") problems.push("console: " + m.text()); });
  page.on("requestfailed", (r) => {
    // The event stream is cut when the page closes; anything else is a problem.
    if (!r.url().includes("/status/events")) problems.push("request failed: " + r.url());
  });
  page.on("request", (r) => {
    if (!r.url().startsWith(new URL(url).origin) && !r.url().startsWith("data:")) problems.push("fetched from elsewhere: " + r.url());
  });
  await page.goto(url, { timeout });
  await page.waitForSelector('body[data-conn="on"]', { timeout });
  await page.waitForSelector('#devices tbody tr[data-device="fryer-1"]', { timeout });
  console.log("loaded");

  // A device appears...
  await page.waitForSelector(`#devices tbody tr[data-device="${device}"] td.state.connected`, { timeout });
  // ...and its value changes.
  const row = `#latest tbody tr[data-device="${device}"][data-point="oil_temp"]`;
  await page.waitForSelector(row, { timeout });
  const first = await page.getAttribute(row, "data-value");
  await page.waitForFunction(([sel, v]) => {
    const r = document.querySelector(sel);
    return r && r.dataset.value !== v;
  }, [row, first], { timeout });
  const second = await page.getAttribute(row, "data-value");
  // The live stream shows the device's messages; a filter narrows it.
  await page.waitForSelector(`#stream tbody tr`, { timeout });
  await page.fill('#filter input[name="device"]', device);
  await page.click('#filter button[type="submit"]');
  await page.waitForSelector('body[data-conn="on"]', { timeout });
  await page.waitForFunction((d) => {
    const rows = [...document.querySelectorAll("#stream tbody tr")];
    return rows.length >= 2 && rows.every((r) => r.cells[2].textContent === d);
  }, device, { timeout });
  // The subscribers table lists this page's own stream.
  await page.waitForFunction(() => [...document.querySelectorAll("#subscribers tbody td")].some((td) => td.textContent.startsWith("status page @")), null, { timeout });
  await page.screenshot({ path: shot, fullPage: true });
  if (problems.length) throw new Error(problems.join("\n"));
  console.log(`ok ${device} oil_temp ${first} -> ${second}`);
} catch (e) {
  console.error(String(e && e.stack || e));
  code = 1;
} finally {
  await ctx.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(code);
