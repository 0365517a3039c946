// Drives the status page in a real Chromium (Debian's) through playwright-core.
// Run by TestStatusPageInBrowser, which starts the gateway and its devices:
//
//   PLAYWRIGHT_CORE=.../node_modules/playwright-core STATUS_URL=http://127.0.0.1:PORT/ \
//   SCREENSHOT=.../status-page.png node status_page.mjs
//
// It prints "loaded" once the page is live (the test then starts a new device),
// waits for the device to appear and its value to change, checks the sparkline of a
// numeric point and the device's state with since-when, then at 1280x800 that the
// subscribers table shows its DROPPED column whole, takes screenshots (SCREENSHOT,
// full page at 1400 wide; SCREENSHOT_1280, the 1280x800 window) and prints "ok".
// Any failure exits non-zero with the reason.
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
  // A numeric point has a sparkline of its recent values (fryer-1's were read
  // back from the hub's ring in the first snapshot, then extended).
  const spark = `#latest tbody tr[data-device="fryer-1"][data-point="oil_temp"] td.trend svg.spark`;
  await page.waitForFunction((sel) => {
    const s = document.querySelector(sel);
    return s && Number(s.dataset.values) >= 2 && s.querySelector("polyline").getAttribute("points").split(" ").length >= 2;
  }, spark, { timeout });
  // A string point has none.
  const order = await page.$$(`#latest tbody tr[data-device="pos-1"] td.trend svg`);
  if (order.length) throw new Error("a sparkline for a string point");
  // The device's state says since when.
  await page.waitForSelector(`#devices tbody tr[data-device="fryer-1"] td.state .since`, { timeout });
  await page.screenshot({ path: shot, fullPage: true });

  // At 1280 pixels the subscribers table fits its section: DROPPED is on screen.
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.waitForFunction(() => {
    const sec = document.getElementById("subscribers-section");
    const th = [...document.querySelectorAll("#subscribers thead th")].find((t) => t.textContent.trim().toLowerCase() === "dropped");
    if (!sec || !th) return false;
    const s = sec.getBoundingClientRect(), h = th.getBoundingClientRect();
    return sec.scrollWidth <= sec.clientWidth && h.width > 0 && h.right <= s.right && h.right <= window.innerWidth;
  }, null, { timeout: 5000 }).catch(async () => {
    const m = await page.evaluate(() => {
      const sec = document.getElementById("subscribers-section");
      return { scrollWidth: sec.scrollWidth, clientWidth: sec.clientWidth, right: sec.getBoundingClientRect().right };
    });
    throw new Error("subscribers table does not fit at 1280 px: " + JSON.stringify(m));
  });
  // Every table fits its section at 1280 (the live stream scrolls by design, rows only).
  const wide = await page.evaluate(() => [...document.querySelectorAll("main section")]
    .filter((sec) => sec.scrollWidth > sec.clientWidth).map((sec) => sec.id));
  if (wide.length) throw new Error("sections wider than the screen at 1280 px: " + wide.join(", "));
  if (process.env.SCREENSHOT_1280) await page.screenshot({ path: process.env.SCREENSHOT_1280 });
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
