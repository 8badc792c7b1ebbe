// The example in real headless Chromium (Debian's, driven by playwright-core) against the real
// origin and the edge under `wrangler dev` (scripts/browser-test.sh starts them and sets):
//   WEB_URL     the example, e.g. http://localhost:3100 (an allowed CORS origin of the edge)
//   EDGE_URL    the edge, e.g. http://localhost:8797 (same site as WEB_URL: cookies flow)
//   ORIGIN_URL  the origin, to compare what the page shows with the API's own answer
//   USER_EMAIL, USER_PASSWORD  a funded account; ARTIFACTS  where the screenshot goes (and where
//               the edge's log is: ARTIFACTS/wrangler.log)
//   EDGE_CLIENT_KEY  the key the Next.js server presents to the edge as a trusted client
//   ADMIN_EMAIL, ADMIN_PASSWORD  an admin account
// Run: node --test e2e/browser.test.mjs
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";

const {
  WEB_URL,
  EDGE_URL,
  ORIGIN_URL,
  USER_EMAIL,
  USER_PASSWORD,
  ADMIN_EMAIL,
  ADMIN_PASSWORD,
  ARTIFACTS,
  EDGE_CLIENT_KEY,
} = process.env;
let browser;

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: [
      "--no-sandbox",
      "--headless=new",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
});

after(async () => {
  await browser?.close();
});

/** A fresh profile (its own cache and cookies) with the example open; `scripts()` resolves to
 * the text of every script the page downloaded, from its very first. */
async function openExample() {
  const context = await browser.newContext();
  const page = await context.newPage();
  const bodies = [];
  page.on("response", (r) => {
    if (r.request().resourceType() === "script") bodies.push(r.text().catch(() => ""));
  });
  await page.goto(WEB_URL);
  await page.getByTestId("live-prices").waitFor();
  return { context, page, scripts: async () => Promise.all(bodies) };
}

const firstRow = (page) => page.locator("[data-testid=server-prices] tbody tr").first();

test("the page shows real prices, rendered on the server and fetched by the browser", async () => {
  const { context, page } = await openExample();
  const row = firstRow(page);
  const service = await row.getAttribute("data-service");
  const cents = Number(await row.getAttribute("data-cents"));
  const country = (await page.locator("h2").first().textContent()).match(/in ([A-Z]{2})/)[1];
  const api = await (
    await fetch(`${ORIGIN_URL}/v1/catalog/5sim/prices/${country.toLowerCase()}/${service}`)
  ).json();
  assert.equal(cents, api.price_cents, "the server-rendered price is the API's");
  const live = page.locator(`[data-testid=live-prices] li[data-service="${service}"]`);
  assert.equal(Number(await live.getAttribute("data-cents")), api.price_cents, "and the live one");
  assert.match(await row.textContent(), /\$\d+\.\d\d/);
  await context.close();
});

test("CORS: the allowed origin passes the preflight, another origin is refused", async () => {
  const { context, page } = await openExample();
  // A JSON POST is not a simple request: the browser sends a preflight first.
  const probe = (edge) =>
    fetch(`${edge}/v1/auth/login`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ email: "nobody@example.com", password: "not the password" }),
    }).then(
      (r) => r.status,
      (e) => `refused: ${e.message}`,
    );
  assert.equal(await page.evaluate(probe, EDGE_URL), 401, "preflight passed, the API answered");
  // The same page served from 127.0.0.1 is another origin, not on the edge's list.
  const other = await context.newPage();
  await other.goto(WEB_URL.replace("localhost", "127.0.0.1"));
  assert.match(String(await other.evaluate(probe, EDGE_URL)), /^refused/);
  await context.close();
});

test("the browser cache: a second read within max-age never leaves the browser; an expired one revalidates with 304", async () => {
  const { context, page } = await openExample();
  const cdp = await context.newCDPSession(page);
  await cdp.send("Network.enable");
  // What went over the wire: the raw status of every network request (a read served from the
  // browser cache makes none; a revalidation shows its real 304 here, while fetch() sees 200).
  const urls = new Map();
  const statuses = [];
  cdp.on("Network.requestWillBeSent", (e) => urls.set(e.requestId, e.request.url));
  cdp.on("Network.responseReceivedExtraInfo", (e) => statuses.push([e.requestId, e.statusCode]));
  const url = `${EDGE_URL}/v1/catalog/providers`;
  const timings = await page.evaluate(async (url) => {
    const entries = () => performance.getEntriesByName(url);
    await (await fetch(url)).text();
    await (await fetch(url)).text();
    // `no-cache`: revalidate with the stored ETag, as after max-age has passed.
    const revalidated = await fetch(url, { cache: "no-cache" });
    await revalidated.text();
    return entries().map((e) => ({
      transferSize: e.transferSize,
      decodedBodySize: e.decodedBodySize,
      duration: e.duration,
    }));
  }, url);
  assert.equal(timings.length, 3);
  const [first, second, third] = timings;
  assert.ok(third.transferSize > 0 && third.transferSize < first.transferSize, "headers only");
  // Timing-Allow-Origin makes these visible; without it every size reads 0.
  assert.ok(first.transferSize > 0 && first.decodedBodySize > 0, JSON.stringify(first));
  assert.equal(second.transferSize, 0, "served from the browser cache");
  assert.ok(second.decodedBodySize > 0, "with the body");
  const network = statuses.filter(([id]) => urls.get(id) === url).map(([, s]) => s);
  assert.deepEqual(network, [200, 304], "one full answer, one 304, nothing for the cached read");
  console.log(
    `timings (Performance API): network ${first.duration.toFixed(1)} ms, browser cache ${second.duration.toFixed(1)} ms, 304 revalidation ${third.duration.toFixed(1)} ms`,
  );
  await context.close();
});

test("sign-in sets an HttpOnly cookie the page cannot read; a double-clicked purchase buys once", async () => {
  const { context, page } = await openExample();
  await page.fill("input[name=email]", USER_EMAIL);
  await page.fill("input[name=password]", USER_PASSWORD);
  await page.click("button[value=login]");
  await page.getByTestId("balance").filter({ hasText: "$" }).waitFor();
  const before = await page.getByTestId("balance").textContent();

  const cookies = await context.cookies(EDGE_URL);
  const session = cookies.find((c) => c.name === "__Host-session");
  assert.ok(session, "the edge set the session cookie");
  assert.equal(session.httpOnly, true);
  assert.ok(!(await page.evaluate(() => document.cookie)).includes("session"), "not readable");

  await page.getByTestId("buy").dblclick();
  await page.locator("[data-testid=bought] li").first().waitFor();
  await page.waitForFunction(() => !document.querySelector("[data-testid=buy]").disabled);
  const history = await page.evaluate(
    (edge) => fetch(`${edge}/v1/activations`, { credentials: "include" }).then((r) => r.json()),
    EDGE_URL,
  );
  assert.equal(history.items.length, 1, "exactly one purchase");
  assert.equal(await page.locator("[data-testid=bought] li").count(), 1);
  const after = await page.getByTestId("balance").textContent();
  const cents = (s) => Math.round(Number(s.replace(/[$,]/g, "")) * 100);
  assert.equal(cents(before) - cents(after), history.items[0].price_cents, "charged once");
  await page.screenshot({ path: `${ARTIFACTS}/example.png`, fullPage: true });
  await context.close();
});

/** Signs the page in; waits for the balance. */
async function signIn(page, email, password) {
  await page.fill("input[name=email]", email);
  await page.fill("input[name=password]", password);
  await page.click("button[value=login]");
  await page.getByTestId("balance").filter({ hasText: "$" }).waitFor();
}

const ADMIN_VIEW = "nexnum-admin-panel";

test("the admin view is a chunk only an admin downloads; an admin's price change shows on the next server render", async () => {
  // A signed-in customer: no admin view, and its code never reaches the browser.
  const visitor = await openExample();
  await signIn(visitor.page, USER_EMAIL, USER_PASSWORD);
  await visitor.page.waitForTimeout(500);
  assert.equal(await visitor.page.getByTestId("admin-panel").count(), 0);
  const downloaded = await visitor.scripts();
  assert.ok(downloaded.length > 0, "the page's scripts were seen");
  assert.ok(!downloaded.some((t) => t.includes(ADMIN_VIEW)), "a customer downloaded the admin view");
  await visitor.context.close();

  // An admin: the chunk arrives with the view.
  const { context, page, scripts } = await openExample();
  const before = (await scripts()).length;
  await signIn(page, ADMIN_EMAIL, ADMIN_PASSWORD);
  await page.getByTestId("admin-panel").locator("form").first().waitFor();
  const after = await scripts();
  assert.ok(after.slice(before).some((t) => t.includes(ADMIN_VIEW)), "the admin view came in a chunk of its own, on sign-in");

  // The admin raises the first product's price in the view; the server-rendered page shows it on
  // a load within seconds (the origin soft-purged the edge and this frontend's data cache: the
  // first load after may still show the old price while the new one is fetched behind it), not
  // after `revalidate` (15 s for prices).
  const row = firstRow(page);
  const service = await row.getAttribute("data-service");
  const cents = Number(await row.getAttribute("data-cents"));
  const target = cents + 111;
  const form = page.locator(`[data-testid=admin-panel] form[data-service="${service}"]`);
  await form.locator("input[name=price]").fill((target / 100).toFixed(2));
  await form.locator("input[name=stock]").fill("50");
  await form.locator("button").click();
  await page.getByTestId("admin-status").filter({ hasText: "Saved" }).waitFor();
  const saved = Date.now();
  let shown = cents;
  while (shown !== target && Date.now() - saved < 5000) {
    await page.reload();
    await page.getByTestId("live-prices").waitFor();
    shown = Number(await firstRow(page).getAttribute("data-cents"));
  }
  assert.equal(shown, target, "the server-rendered page shows the new price");
  console.log(`price change to the server-rendered page: ${Date.now() - saved} ms`);
  await context.close();
});

test("provider logos load through next/image, and the page does not shift as it loads", async () => {
  const { context, page } = await openExample();
  const logos = page.getByTestId("logo");
  const providers = await page.locator("[data-testid=providers] li").count();
  assert.ok(providers > 0);
  assert.equal(await logos.count(), providers, "one per provider");
  for (const logo of await logos.all()) {
    await logo.evaluate((img) => (img.complete ? null : new Promise((r) => (img.onload = r))));
    const size = await logo.evaluate((img) => [img.naturalWidth, img.width, img.height]);
    assert.ok(size[0] > 0, "the logo loaded");
    assert.deepEqual(size.slice(1), [32, 32], "its box was reserved");
  }
  const cls = await page.evaluate(
    () =>
      new Promise((resolve) => {
        let total = 0;
        new PerformanceObserver((list) => {
          for (const e of list.getEntries()) if (!e.hadRecentInput) total += e.value;
        }).observe({ type: "layout-shift", buffered: true });
        setTimeout(() => resolve(total), 1000);
      }),
  );
  assert.equal(cls, 0, "cumulative layout shift");
  await context.close();
});

test("a price that went up after the page was rendered charges nothing until the visitor accepts it", async () => {
  const { context, page } = await openExample();
  await signIn(page, USER_EMAIL, USER_PASSWORD);
  const balance = await page.getByTestId("balance").textContent();
  const row = firstRow(page);
  const [service, cents] = [await row.getAttribute("data-service"), Number(await row.getAttribute("data-cents"))];
  const country = (await page.locator("h2").first().textContent()).match(/in ([A-Z]{2})/)[1].toLowerCase();
  // Meanwhile an admin raises it (straight at the origin's API).
  const login = await fetch(`${ORIGIN_URL}/v1/auth/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email: ADMIN_EMAIL, password: ADMIN_PASSWORD }),
  });
  const { token } = await login.json();
  const raised = cents + 250;
  const put = await fetch(`${ORIGIN_URL}/v1/admin/prices/5sim/${country}/${service}`, {
    method: "PUT",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify({ price_cents: raised, stock: 50 }),
  });
  assert.equal(put.status, 200);

  await page.getByTestId("buy").click();
  await page.getByTestId("buy-at-new-price").waitFor();
  assert.match(await page.getByTestId("message").textContent(), /price changed to \$[\d.]+ since you saw it\. Nothing was charged/);
  assert.equal(await page.getByTestId("balance").textContent(), balance, "nothing charged");
  const bought = await page.locator("[data-testid=bought] li").count();
  await page.getByTestId("buy-at-new-price").click();
  await page.locator("[data-testid=bought] li").nth(bought).waitFor();
  assert.match(await page.locator("[data-testid=bought] li").first().textContent(), new RegExp(`\\$${(raised / 100).toFixed(2)}`));
  await context.close();
});

test("a 429 is explained on the page, not a blank screen", async () => {
  const { context, page } = await openExample();
  await page.fill("input[name=email]", USER_EMAIL);
  await page.fill("input[name=password]", "a wrong password");
  const message = page.getByTestId("message");
  let text = "";
  for (let i = 0; i < 8 && !text.includes("Too many"); i++) {
    await page.click("button[value=login]");
    await message.waitFor();
    text = await message.textContent();
  }
  assert.match(text, /Too many attempts\. Try again in \d+ seconds\./);
  assert.equal(await page.locator("h1").textContent(), "NexNum catalog", "the page is still there");
  await page.screenshot({ path: `${ARTIFACTS}/rate-limited.png` });
  await context.close();
});

test("the server renders as a trusted client of the edge, and its key is never logged", async () => {
  const { context } = await openExample();
  await context.close();
  const { readFile } = await import("node:fs/promises");
  const log = await readFile(`${ARTIFACTS}/wrangler.log`, "utf8");
  const lines = log.split("\n").filter((l) => l.includes('"request_id"'));
  const callers = new Set(lines.map((l) => JSON.parse(l.slice(l.indexOf("{"))).caller));
  assert.ok(callers.has("trusted:nextjs"), `the server's reads: ${[...callers]}`);
  assert.ok(callers.has("client"), "the browser's own reads");
  assert.ok(!log.includes(EDGE_CLIENT_KEY), "the key is in the edge's log");
});
