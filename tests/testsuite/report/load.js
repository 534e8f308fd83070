// Loads a report page in headless Chromium (Debian's `chromium`) through
// playwright-core, and prints what the test checks as one JSON object:
// console errors and uncaught exceptions, requests made (a report fetches
// nothing but itself) and failed ones, each platform row as the DOM holds
// it, the list digest, and the failure with its place on the page.
//
// usage: node load.js PAGE.html SCREENSHOT.png
// NODE_PATH must hold playwright-core (tests/lab/up installs it under
// $LAB_DIR/playwright/node_modules); CHROMIUM names the browser.
"use strict";
const fs = require("fs");
const os = require("os");
const path = require("path");
const { chromium } = require("playwright-core");

async function main() {
  const [pagePath, screenshot] = process.argv.slice(2);
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "mab-report-profile-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    chromiumSandbox: false,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
    viewport: { width: 1400, height: 900 },
  });
  const seen = { console_errors: [], page_errors: [], requests: [], failed_requests: [] };
  try {
    const page = await context.newPage();
    page.on("console", (message) => {
      if (message.type() === "error" || message.type() === "warning") {
        seen.console_errors.push(`${message.type()}: ${message.text()}`);
      }
    });
    page.on("pageerror", (error) => seen.page_errors.push(String(error)));
    page.on("request", (request) => seen.requests.push(request.url()));
    page.on("requestfailed", (request) =>
      seen.failed_requests.push(`${request.url()}: ${request.failure().errorText}`),
    );
    const url = "file://" + path.resolve(pagePath);
    await page.goto(url, { waitUntil: "load" });
    const found = await page.evaluate(() => {
      const text = (selector) => {
        const element = document.querySelector(selector);
        return element ? element.textContent : null;
      };
      const rows = [...document.querySelectorAll(".row.platform")].map((row) => ({
        platform: row.dataset.platform,
        runner: row.querySelector(".runner").textContent,
        how: row.querySelector(".how").textContent,
        critical: row.classList.contains("critical"),
        bars: [...row.querySelectorAll(".bar")].map((bar) => bar.textContent),
        log: (() => {
          const log = [...document.querySelectorAll("details.log")].find(
            (details) => details.dataset.platform === row.dataset.platform,
          );
          return log ? log.querySelector("pre").textContent : null;
        })(),
      }));
      const failure = document.querySelector("#failure");
      const timeline = document.querySelector("#timeline");
      return {
        title: document.title,
        rows,
        digest: text("#list-digest"),
        tags: [...document.querySelectorAll("#tags li")].map((li) => li.textContent),
        failure: failure ? failure.querySelector(".message").textContent : null,
        failure_top: failure ? failure.getBoundingClientRect().top : null,
        failure_before_timeline:
          failure && timeline
            ? Boolean(failure.compareDocumentPosition(timeline) & Node.DOCUMENT_POSITION_FOLLOWING)
            : null,
        viewport_height: window.innerHeight,
        scripts: document.querySelectorAll("script").length,
      };
    });
    await page.screenshot({ path: screenshot, fullPage: true });
    seen.url = url;
    console.log(JSON.stringify({ ...seen, ...found }));
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
