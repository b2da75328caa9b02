// A shopper in a real browser: adds to the cart with the enhanced forms and with the seed
// block's onclick="addToCart(...)", then changes the quantity on the cart page (plain form).
// Usage: node cart.mjs http://demo.localhost:PORT [screenshot-dir]
import { chromium } from 'playwright-core';

const base = process.argv[2];
const shots = process.argv[3];
if (!base) throw new Error('usage: node cart.mjs <store url> [screenshot dir]');

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync'],
});
const fail = (msg) => { throw new Error(msg); };
// A node under load may shed a page with 503 and Retry-After (the test suite runs beside this
// script); a shopper reloads. Any other failed answer fails the flow, naming what came back.
async function settled(page, response, what) {
  for (let tries = 0; response && response.status() === 503 && tries < 20; tries++) {
    const after = Number(response.headers()['retry-after'] || '1');
    await page.waitForTimeout(Math.min(Math.max(after, 0.2), 5) * 1000);
    response = await page.reload();
  }
  if (response && !response.ok()) {
    const body = (await response.text().catch(() => '')).slice(0, 300);
    fail(`${what}: ${response.status()} from ${response.url()}: ${body}`);
  }
  return response;
}
try {
  const page = await browser.newPage();
  const count = async () => (await page.textContent('#v-cart-count')).trim();
  const visit = async (path) => settled(page, await page.goto(base + path), `GET ${path}`);
  const submit = async (what, click) => {
    const [response] = await Promise.all([page.waitForNavigation(), click()]);
    return settled(page, response, what);
  };

  await visit('/');
  if ((await count()) !== '0') fail('a new shopper starts with an empty cart');
  // The enhanced form: stays on the page, updates the count in place.
  await page.locator('form[action="/cart/items"] button').first().click();
  await page.waitForFunction(() => document.getElementById('v-cart-count').textContent.trim() === '1', null, { timeout: 10000 });
  if (new URL(page.url()).pathname !== '/') fail('adding with JavaScript keeps the shopper on the page');

  // The seed's custom block: onclick="addToCart('id', 1)".
  await visit('/pages/seed-examples');
  if ((await count()) !== '1') fail('the count survives navigation (personalised page)');
  await page.locator('button[onclick^="addToCart"]').first().click();
  await page.waitForFunction(() => document.getElementById('v-cart-count').textContent.trim() === '2', null, { timeout: 10000 });

  // The cart page: a plain form post changes a quantity (303 back to /cart).
  await visit('/cart');
  const lines = await page.locator('.v-cart__line').count();
  if (lines !== 2) fail(`expected 2 cart lines, saw ${lines}`);
  const first = page.locator('.v-cart__line').first();
  await first.locator('input[name="quantity"]').fill('3');
  await submit('the quantity update', () => first.locator('button', { hasText: 'Update' }).click());
  if ((await count()) !== '4') fail(`after setting a quantity of 3 the count should be 4, saw ${await count()}`);
  if (shots) await page.screenshot({ path: `${shots}/cart.png`, fullPage: true });

  // Remove a line without JavaScript semantics (form with _method=DELETE).
  await submit('the removal', () => page.locator('.v-cart__line').first().locator('button', { hasText: 'Remove' }).click());
  if ((await page.locator('.v-cart__line').count()) !== 1) fail('the line was removed');
  // Checkout with the plain form: lands on the order page, cart emptied.
  await submit('the checkout', () => page.locator('form[action="/checkout"] button').click());
  if (!new URL(page.url()).pathname.startsWith('/orders/')) fail(`checkout should land on the order page, got ${page.url()}`);
  if (!(await page.textContent('main')).includes('Thank you for your order')) fail('the order page thanks the shopper');
  if ((await count()) !== '0') fail('the order emptied the cart');
  if (shots) await page.screenshot({ path: `${shots}/order.png`, fullPage: true });
  console.log('browser: cart flow ok');
} finally {
  await browser.close();
}
