// Live updates in a real browser: two tabs of one shopper (one browser context, one cookie
// jar) — adding in one changes the other's cart count without a reload; a signed webhook's
// price change appears on an open product page within 1 s; a hostile product name from the
// feed, shown by a refreshed cart block, stays text. A screenshot of each step.
// Usage: node live.mjs http://demo.localhost:PORT WEBHOOK_SECRET SCREENSHOT_DIR
import { createHmac } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { chromium } from 'playwright-core';

const [base, secret, shots] = process.argv.slice(2);
if (!base || !secret || !shots) throw new Error('usage: node live.mjs <store url> <webhook secret> <screenshot dir>');
mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync'],
});
const fail = (msg) => { throw new Error(msg); };
let step = 0;
const shot = async (page, name) => page.screenshot({ path: `${shots}/${String(++step).padStart(2, '0')}-${name}.png`, fullPage: true });

// A generic webhook (signed like the store's feed would) upserting the demo's first product.
let sent = 0;
async function upsert(fields) {
  const t = Math.floor(Date.now() / 1000);
  const updatedAt = new Date(Date.UTC(2030, 0, 1) + ++sent * 1000).toISOString();
  const body = JSON.stringify({ id: `live-e2e-${t}-${sent}`, store: 'demo', type: 'product.upsert',
    data: { id: 'p-001', handle: 'enamel-camp-mug', title: 'Enamel Camp Mug', description: 'A mug.', stock: 50, updatedAt, ...fields } });
  const sig = createHmac('sha256', secret).update(`${t}.${body}`).digest('hex');
  // Any host takes webhooks (the store is in the header); Node does not resolve *.localhost.
  const res = await fetch(`http://127.0.0.1:${new URL(base).port}/webhooks/generic`, {
    method: 'POST', body,
    headers: { 'content-type': 'application/json', 'vitrina-store': 'demo', 'vitrina-signature': `t=${t},v1=${sig}` },
  });
  const answer = await res.json();
  if (res.status !== 200 || answer.status !== 'applied') fail(`webhook not applied: ${res.status} ${JSON.stringify(answer)}`);
}

try {
  const context = await browser.newContext();
  const tabA = await context.newPage();
  const tabB = await context.newPage();
  const count = async (page) => (await page.textContent('#v-cart-count')).trim();
  // data-live: 'guest' or 'shopper' once the page's socket said hello (see actors/live.js).
  const live = (page, ...states) =>
    page.waitForFunction((s) => s.includes(document.documentElement.getAttribute('data-live')), states, { timeout: 10000 });

  // Both tabs open before the visitor's first write (with public pages off, the first page
  // already set a session cookie; with them on, the tabs listen as guests until that write).
  await tabA.goto(base + '/products/enamel-camp-mug');
  await tabB.goto(base + '/');
  await live(tabA, 'guest', 'shopper');
  await live(tabB, 'guest', 'shopper');
  await shot(tabB, 'tab-b-before');

  // The first add (tab A): both tabs' sockets are the shopper's from then on.
  await tabA.locator('form[action="/cart/items"] button').first().click();
  await tabA.waitForFunction(() => document.getElementById('v-cart-count').textContent.trim() === '1', null, { timeout: 10000 });
  await live(tabA, 'shopper');
  await live(tabB, 'shopper');
  const reloads = await tabB.evaluate(() => performance.getEntriesByType('navigation').length);

  // A second add in tab A: tab B's count changes without a reload.
  await tabA.locator('form[action="/cart/items"] button').first().click();
  await tabB.waitForFunction(() => document.getElementById('v-cart-count').textContent.trim() === '2', null, { timeout: 5000 })
    .catch(() => fail('the other tab\'s cart count did not change'));
  if ((await tabB.evaluate(() => performance.getEntriesByType('navigation').length)) !== reloads) fail('tab B was reloaded');
  if (new URL(tabB.url()).pathname !== '/') fail('tab B stayed on its page');
  await shot(tabB, 'tab-b-count-updated');

  // A signed webhook's price change shows on the open product page within 1 s.
  const price = () => tabA.textContent('.v-product-detail .v-price');
  if ((await price()).trim() !== '$18.00') fail(`unexpected starting price ${await price()}`);
  await shot(tabA, 'product-before');
  const started = Date.now();
  await upsert({ price: '15.25' });
  await tabA.waitForFunction(() => document.querySelector('.v-product-detail .v-price').textContent.trim() === '$15.25', null, { timeout: 1000 })
    .catch(() => fail(`the new price did not appear within 1 s of the webhook (${Date.now() - started} ms)`));
  console.log(`browser: price on the open page ${Date.now() - started} ms after the webhook was sent`);
  await shot(tabA, 'product-price-updated');

  // A hostile name from the feed, on an open cart page: its cart block is refreshed with the
  // server's own (escaped) render, and the name stays text.
  await tabB.goto(base + '/cart');
  await live(tabB, 'shopper');
  const hostile = '<img src=x onerror="window.__pwned=1">Mug';
  await upsert({ price: '16.00', title: hostile });
  await tabB.waitForFunction(() => (document.querySelector('.v-cart') || {}).textContent?.includes('$32.00'), null, { timeout: 3000 })
    .catch(() => fail('the cart block was not refreshed after the price change'));
  if (!(await tabB.textContent('.v-cart')).includes(hostile)) fail('the hostile name is shown as text');
  if (await tabB.evaluate(() => window.__pwned === 1 || document.querySelector('.v-cart img[src="x"]') !== null)) fail('the hostile name ran');
  await shot(tabB, 'cart-hostile-name-escaped');
  console.log('browser: live flow ok');
} finally {
  await browser.close();
}
