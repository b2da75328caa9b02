// A shopper in a real browser: adds to the cart with the enhanced forms and with the seed
// block's onclick="addToCart(...)", then changes the quantity on the cart page (plain form).
// A failing step leaves FAILED-shopper.png, FAILED-shopper.html and console-log.txt (every
// answer the page got, its console messages and errors, and the step that failed).
// Usage: node cart.mjs http://demo.localhost:PORT [screenshot-dir]
import { chromium } from 'playwright-core';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const base = process.argv[2];
const shots = process.argv[3];
if (!base) throw new Error('usage: node cart.mjs <store url> [screenshot dir]');
if (shots) mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync'],
});
const fail = (msg) => { throw new Error(msg); };
const log = [];
const at = () => new Date().toISOString().slice(11, 23);
let doing = 'starting';
const doingNow = (what) => { doing = what; log.push(`${at()} -- ${what}`); };
// A node under load may shed a page with 503 and Retry-After (the test suite runs beside this
// script); a shopper tries again. Any other failed answer fails the flow, naming what came back.
const retryAfter = (response) => Math.min(Math.max(Number(response.headers()['retry-after'] || '1'), 0.2), 5) * 1000;
async function settled(page, response, what, again) {
  for (let tries = 0; response && response.status() === 503 && tries < 20; tries++) {
    log.push(`${at()} ${what} shed with 503, trying again`);
    await page.waitForTimeout(retryAfter(response));
    response = await again();
  }
  if (response && !response.ok()) {
    const body = (await response.text().catch(() => '')).slice(0, 300);
    fail(`${what}: ${response.status()} from ${response.url()}: ${body}`);
  }
  return response;
}
const pageRef = {};
try {
  const page = await browser.newPage();
  pageRef.page = page;
  page.on('console', (m) => log.push(`${at()} console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => log.push(`${at()} page error: ${e}`));
  page.on('requestfailed', (r) => log.push(`${at()} request failed: ${r.method()} ${r.url()} ${r.failure()?.errorText || ''}`));
  page.on('response', (r) => log.push(`${at()} ${r.status()} ${r.request().method()} ${r.url()}`));
  page.on('framenavigated', (f) => { if (f === page.mainFrame()) log.push(`${at()} at ${f.url()}`); });
  const count = async () => (await page.textContent('#v-cart-count')).trim();
  const visit = async (path) => {
    doingNow(`GET ${path}`);
    return settled(page, await page.goto(base + path), `GET ${path}`, () => page.reload());
  };
  // A form post the node shed was not applied: the shopper goes back and sends it again (a
  // reload would re-post without the form on screen).
  const submit = async (what, click) => {
    doingNow(what);
    const send = async () => (await Promise.all([page.waitForNavigation(), click()]))[0];
    return settled(page, await send(), what, async () => { await page.goBack(); return send(); });
  };

  await visit('/');
  if ((await count()) !== '0') fail('a new shopper starts with an empty cart');
  // The enhanced form: stays on the page, updates the count in place.
  doingNow('add with the enhanced form');
  await page.locator('form[action="/cart/items"] button').first().click();
  await page.waitForFunction(() => document.getElementById('v-cart-count').textContent.trim() === '1', null, { timeout: 10000 });
  if (new URL(page.url()).pathname !== '/') fail('adding with JavaScript keeps the shopper on the page');

  // The seed's custom block: onclick="addToCart('id', 1)".
  await visit('/pages/seed-examples');
  if ((await count()) !== '1') fail('the count survives navigation (personalised page)');
  // The first answer is a shed (503, Retry-After: 1): the page sends the add again itself.
  doingNow('add with the seed block\'s onclick, the first try shed');
  let shed = 0;
  await page.route('**/cart/items', (route) => {
    shed += 1;
    return route.fulfill({
      status: 503,
      headers: { 'Retry-After': '1', 'Content-Type': 'application/json' },
      body: JSON.stringify({ error: { code: 'render_capacity', message: 'busy', requestId: 'req_test' } }),
    });
  }, { times: 1 });
  await page.locator('button[onclick^="addToCart"]').first().click();
  await page.waitForFunction(() => document.getElementById('v-cart-count').textContent.trim() === '2', null, { timeout: 10000 });
  if (shed !== 1) fail(`the shed answer was given ${shed} times`);

  // The cart page: a plain form post changes a quantity (303 back to /cart).
  await visit('/cart');
  const lines = await page.locator('.v-cart__line').count();
  if (lines !== 2) fail(`expected 2 cart lines, saw ${lines}`);
  const first = page.locator('.v-cart__line').first();
  await submit('the quantity update', async () => {
    await first.locator('input[name="quantity"]').fill('3');
    await first.locator('button', { hasText: 'Update' }).click();
  });
  if ((await count()) !== '4') fail(`after setting a quantity of 3 the count should be 4, saw ${await count()}`);
  if (shots) await page.screenshot({ path: `${shots}/cart.png`, fullPage: true });

  // Remove a line without JavaScript semantics (form with _method=DELETE).
  await submit('the removal', () => page.locator('.v-cart__line').first().locator('button', { hasText: 'Remove' }).click());
  if ((await page.locator('.v-cart__line').count()) !== 1) fail('the line was removed');
  // Checkout with the plain form: lands on the order page, cart emptied.
  await submit('the checkout', () => page.locator('form[action="/checkout"] button').click());
  doingNow('read the order page');
  if (!new URL(page.url()).pathname.startsWith('/orders/')) fail(`checkout should land on the order page, got ${page.url()}`);
  if (!(await page.textContent('main')).includes('Thank you for your order')) fail('the order page thanks the shopper');
  if ((await count()) !== '0') fail('the order emptied the cart');
  if (shots) await page.screenshot({ path: `${shots}/order.png`, fullPage: true });
  console.log('browser: cart flow ok');
} catch (e) {
  log.push(`FAILED while ${doing}: ${e && e.stack ? e.stack : e}`);
  const page = pageRef.page;
  if (shots && page && !page.isClosed()) {
    await page.screenshot({ path: join(shots, 'FAILED-shopper.png'), fullPage: true, timeout: 10000 })
      .catch((err) => log.push(`no screenshot: ${err}`));
    const html = await page.content().catch((err) => `no HTML: ${err}`);
    writeFileSync(join(shots, 'FAILED-shopper.html'), html);
    log.push(`the page at ${page.url()} begins: ${html.slice(0, 400).replace(/\s+/g, ' ')}`);
  }
  if (shots) writeFileSync(join(shots, 'console-log.txt'), log.join('\n') + '\n');
  console.log(`failed while ${doing}`);
  throw e;
} finally {
  await browser.close();
}
