// A thin bridge from a Go test to Debian's headless Chromium, through
// playwright-core: the test's logic stays in Go. Commands arrive on stdin as
// JSON lines {"id":N,"op":"...",...}; each gets one JSON line back on
// stdout, {"id":N,"ok":true,"value":...} or {"id":N,"ok":false,"error":"..."}.
//
//   node browser.cjs USER_DATA_DIR   (NODE_PATH must reach playwright-core)
"use strict";

const { chromium } = require("playwright-core");
const readline = require("readline");

const ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

function fn(expr) {
  return new Function("return (" + expr + ");");
}

function reply(msg) {
  process.stdout.write(JSON.stringify(msg) + "\n");
}

async function main() {
  const userDataDir = process.argv[2];
  if (!userDataDir) throw new Error("usage: node browser.cjs USER_DATA_DIR");
  const ctx = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ARGS,
    viewport: { width: 1280, height: 900 },
    timeout: 120000,
  });
  const page = ctx.pages()[0] || (await ctx.newPage());
  // What the page did beyond what the test asked: its console, its errors,
  // and every URL it requested (the page must not leave its origin).
  const log = { console: [], errors: [], requests: [] };
  page.on("console", (m) => log.console.push(m.type() + ": " + m.text()));
  page.on("pageerror", (e) => log.errors.push(String(e)));
  ctx.on("request", (r) => log.requests.push(r.url()));

  const ops = {
    goto: async (c) => {
      const r = await page.goto(c.url, { waitUntil: "load", timeout: c.timeout });
      return r ? r.status() : 0;
    },
    // Polls the expression in the page until it is truthy; returns its
    // value. Expressions are sent as functions: the page's CSP forbids eval.
    wait: async (c) => (await page.waitForFunction(fn(c.expr), null, { timeout: c.timeout, polling: 100 })).jsonValue(),
    eval: (c) => page.evaluate(fn(c.expr)),
    fill: (c) => page.fill(c.selector, c.value, { timeout: c.timeout }),
    click: (c) => page.click(c.selector, { timeout: c.timeout }),
    press: (c) => page.press(c.selector, c.key, { timeout: c.timeout }),
    screenshot: async (c) => { await page.screenshot({ path: c.path, fullPage: !!c.fullPage }); return c.path; },
    viewport: (c) => page.setViewportSize({ width: c.width, height: c.height }),
    media: (c) => page.emulateMedia({ colorScheme: c.colorScheme }),
    log: async () => log,
  };

  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    let c;
    try {
      c = JSON.parse(line);
    } catch (e) {
      reply({ id: 0, ok: false, error: "bad command: " + e });
      continue;
    }
    if (c.op === "close") break;
    const op = ops[c.op];
    if (!op) {
      reply({ id: c.id, ok: false, error: "unknown op " + c.op });
      continue;
    }
    try {
      const value = await op(c);
      reply({ id: c.id, ok: true, value: value === undefined ? null : value });
    } catch (e) {
      reply({ id: c.id, ok: false, error: String(e && e.message ? e.message : e) });
    }
  }
  await ctx.close();
}

main().then(() => process.exit(0), (e) => {
  process.stderr.write("browser.cjs: " + (e && e.stack ? e.stack : e) + "\n");
  process.exit(1);
});
