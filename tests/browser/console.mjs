// The merchant console in a real browser: log in with the demo's admin token; edit a custom
// block's code and watch the draft preview change; publish and see it on the storefront; a
// syntax error shown at its line, and Publish refused; reorder two blocks; roll back; edit the
// library hero's settings through the form generated from its declared settings (a hostile
// image URL refused at its field); a second console's preview refreshes when the first saves;
// the owner adds an editor, who logs in with their own password and publishes, in the audit log.
// A screenshot per step goes to the screenshot directory; a failing step also leaves
// FAILED-{page}.png of every open page and console-log.txt (every page's console messages,
// page errors and failed requests, and the step that failed).
// Usage: node console.mjs http://demo.localhost:PORT <admin token> <screenshot dir>
import { chromium } from 'playwright-core';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const [base, token, shots] = process.argv.slice(2);
if (!base || !token || !shots) throw new Error('usage: node console.mjs <store url> <admin token> <screenshot dir>');
mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync'],
});
const fail = (msg) => { throw new Error(msg); };
const problems = [];
let step = 0;
// What the failure artefacts are made of: every page opened (by name), everything they logged,
// and the step under way.
const pages = [];
const log = [];
let doing = 'starting';
const watch = (p, name) => {
  pages.push([name, p]);
  const at = () => new Date().toISOString().slice(11, 23);
  p.on('console', (m) => log.push(`${at()} [${name}] console.${m.type()}: ${m.text()}`));
  p.on('pageerror', (e) => { log.push(`${at()} [${name}] page error: ${e}`); problems.push(String(e)); });
  p.on('requestfailed', (r) => log.push(`${at()} [${name}] request failed: ${r.method()} ${r.url()} ${r.failure()?.errorText || ''}`));
  p.on('response', (r) => { if (r.status() >= 400) log.push(`${at()} [${name}] ${r.status()} ${r.request().method()} ${r.url()}`); });
  p.on('framenavigated', (f) => { if (f === p.mainFrame()) log.push(`${at()} [${name}] at ${f.url()}`); });
  return p;
};
const doingNow = (what) => { doing = what; log.push(`${new Date().toISOString().slice(11, 23)} -- ${what}`); };
try {
  const context = await browser.newContext({ viewport: { width: 1600, height: 1000 } });
  const page = watch(await context.newPage(), 'owner');
  page.on('console', (m) => { if (m.type() === 'error') problems.push(m.text()); });
  const shot = async (name) => {
    step += 1;
    const file = join(shots, `${String(step).padStart(2, '0')}-${name}.png`);
    await page.screenshot({ path: file, fullPage: true });
    console.log(`screenshot ${file}`);
  };
  const status = () => page.locator('#status');
  const waitStatus = async (text) => {
    await page.waitForFunction((t) => (document.getElementById('status')?.textContent || '').includes(t), text, { timeout: 15000 })
      .catch(async () => fail(`status never said ${JSON.stringify(text)}; it says ${JSON.stringify(await status().textContent())}`));
  };
  const setCode = async (code) => {
    await page.locator('#code .cm-content').click();
    await page.keyboard.press('Control+A');
    await page.keyboard.press('Delete');
    await page.keyboard.insertText(code);
  };
  const preview = page.frameLocator('#preview');
  const blockIds = () => page.locator('#blocks li').evaluateAll((els) => els.map((e) => e.dataset.blockId));

  // 1. Log in: the token becomes an HttpOnly cookie; the page keeps no copy of it.
  doingNow('1 log in');
  await page.goto(base + '/admin/');
  await page.locator('#token').fill('wrong-token');
  await page.locator('#login button[type=submit]').click();
  await page.locator('#login .status', { hasText: 'token' }).waitFor({ timeout: 10000 });
  await page.locator('#token').fill(token);
  await shot('login');
  await page.locator('#login button[type=submit]').click();
  await page.locator('nav #logout').waitFor({ timeout: 10000 });
  const cookies = await context.cookies(base + '/admin/');
  const session = cookies.find((c) => c.name === 'vitrina_console') || fail('no console cookie');
  if (!session.httpOnly || session.sameSite !== 'Strict' || session.value.includes(token)) fail(`bad cookie ${JSON.stringify(session)}`);
  const visible = await page.evaluate(() => document.cookie + JSON.stringify(localStorage) + JSON.stringify(sessionStorage) + document.documentElement.outerHTML);
  if (visible.includes(token) || visible.includes('vitrina_console')) fail('the page can see the token or the session cookie');
  await page.locator('#store-status').waitFor();
  // Today's counts, as the store actor has them.
  doingNow('overview counts');
  await page.locator('#today #stat-visitors').waitFor({ timeout: 10000 });
  if (!/^\d+$/.test(await page.locator('#stat-visitors').textContent())) fail('visitors today is a count');
  await shot('overview');

  // 2. Edit the custom hero's code: the draft preview changes; publish; the storefront shows it.
  doingNow('2 edit code, preview, publish');
  await page.goto(base + '/admin/#/pages/seed-examples');
  await page.locator('#code .cm-content').waitFor({ timeout: 10000 });
  const [hero, grid] = await blockIds();
  const marker = `Edited in the console ${Date.now()}`;
  const heroCode = (text) => `function renderHero(storefront, helpers) {\n  return \`<section class="hero"><h1>\${helpers.escapeHtml(storefront.name)}</h1><p class="marker">${text}</p></section>\`;\n}`;
  await setCode(heroCode(marker));
  await preview.locator(`text=${marker}`).waitFor({ timeout: 15000 });
  await shot('preview-changed');
  const live = watch(await context.newPage(), 'storefront');
  await live.goto(base + '/pages/seed-examples');
  if ((await live.content()).includes(marker)) fail('the draft is not live before Publish');
  await page.locator('#publish').click();
  await waitStatus('Published version');
  await live.reload();
  if (!(await live.content()).includes(marker)) fail('the published edit is not on the storefront');
  await live.screenshot({ path: join(shots, `${String(++step).padStart(2, '0')}-storefront-published.png`), fullPage: true });
  console.log(`screenshot ${join(shots, `${String(step).padStart(2, '0')}-storefront-published.png`)}`);

  // The home page's library hero gets code of its own in the draft, then goes back to the library.
  doingNow('home hero code and back');
  await page.goto(base + '/admin/#/pages/home');
  await page.locator('#write-code').click();
  await page.locator('#code .cm-content').waitFor({ timeout: 10000 });
  const homeMarker = `Home hero from code ${Date.now()}`;
  await setCode(heroCode(homeMarker));
  await preview.locator(`text=${homeMarker}`).waitFor({ timeout: 15000 });
  await shot('home-hero-code');
  await page.locator('#library-code').click();
  await waitStatus('Back to the library block');
  // The preview reloads after the save: wait for the code's marker to leave it.
  await preview.locator(`text=${homeMarker}`).waitFor({ state: 'detached', timeout: 15000 }).catch(() => fail('the library hero is back in the preview'));
  await page.goto(base + '/admin/#/pages/seed-examples');
  await page.locator('#code .cm-content').waitFor({ timeout: 10000 });

  // 3. A syntax error: shown at its line (inline and listed); Publish is refused.
  doingNow('3 syntax error refused');
  await setCode('function renderHero(storefront, helpers) {\n  return `<p>broken</p>` +;\n}');
  await page.locator('#diagnostics li.error[data-line="2"]').waitFor({ timeout: 10000 });
  await page.locator('#code .cm-lintRange-error').first().waitFor({ timeout: 10000 });
  const said = await page.locator('#diagnostics li.error').first().textContent();
  if (!said.includes('line 2')) fail(`the error names its line: ${said}`);
  await page.locator('#publish').click();
  await waitStatus('Publish refused');
  await page.locator('#problems li[data-line="2"]').waitFor({ timeout: 10000 });
  await shot('syntax-error-refused');
  await live.reload();
  if (!(await live.content()).includes(marker)) fail('a refused publish changed the storefront');
  await setCode(heroCode(marker));
  await page.locator('#diagnostics li.error').waitFor({ state: 'detached', timeout: 10000 });
  await waitStatus('Draft saved');

  // 4. Reorder the two blocks, publish: the storefront shows the new order.
  doingNow('4 reorder and publish');
  await page.locator(`#blocks li[data-block-id="${hero}"] button.down`).click();
  await page.waitForFunction(([a, b]) => [...document.querySelectorAll('#blocks li')].map((e) => e.dataset.blockId).join() === [b, a].join(), [hero, grid], { timeout: 10000 });
  await waitStatus('Block moved');
  await page.locator('#publish').click();
  await waitStatus('Published version');
  await shot('reordered');
  await live.reload();
  const html = await live.content();
  const gridAt = html.indexOf('grid grid-cols-3');
  const heroAt = html.indexOf(marker);
  if (gridAt < 0 || heroAt < 0 || gridAt > heroAt) fail(`the grid now comes before the hero (grid ${gridAt}, hero ${heroAt})`);

  // Devices: the preview narrows to a phone's width.
  doingNow('mobile preview');
  await page.locator('button.device[data-device="mobile"]').click();
  const width = await page.locator('#preview').evaluate((f) => f.getBoundingClientRect().width);
  if (Math.abs(width - 375) > 1) fail(`mobile preview is 375 px wide, saw ${width}`);
  await shot('mobile-preview');

  // 5. Roll back to the seed's version 1: the storefront shows the original hero again.
  doingNow('5 roll back');
  await page.locator('#versions button.rollback[data-version="1"]').click();
  await waitStatus('Rolled back to version 1');
  await live.reload();
  const back = await live.content();
  if (back.includes(marker) || !back.includes('Shop Now')) fail('the rollback restored version 1');
  const [first] = await blockIds();
  if (first !== hero) fail('the rollback restored the draft order too');
  await shot('rolled-back');

  // 6. The library hero's settings, in the form built from what the hero declares: an edit
  // shows in the preview; a javascript: image URL is refused at its field.
  doingNow('6 hero settings form');
  await page.goto(base + '/admin/#/pages/home');
  await page.locator('#settings-form #setting-heading').waitFor({ timeout: 10000 });
  const heading = `Heading from the form ${Date.now()}`;
  await page.locator('#setting-heading').fill(heading);
  await preview.locator(`text=${heading}`).waitFor({ timeout: 15000 }).catch(() => fail('the form edit shows in the preview'));
  await page.locator('#setting-align').selectOption('left');
  await preview.locator('section.v-hero--left').waitFor({ timeout: 15000 }).catch(() => fail('the select shows in the preview'));
  await shot('hero-settings-form');
  await page.locator('#setting-image').fill('javascript:alert(1)');
  await page.locator('#setting-image-error', { hasText: 'image' }).waitFor({ timeout: 10000 })
    .catch(() => fail('the refused image URL is shown at its field'));
  await shot('hero-setting-refused');
  await page.locator('#setting-image').fill('');
  await waitStatus('Draft saved');

  // 7. Two editors: a second console page's preview refreshes when the first one saves.
  doingNow('7 second console refreshes');
  const other = watch(await context.newPage(), 'second-console');
  await other.goto(base + '/admin/#/pages/home');
  await other.locator('#settings-form #setting-heading').waitFor({ timeout: 10000 });
  await other.waitForFunction(() => document.body.dataset.draftsLive === 'open', null, { timeout: 10000 })
    .catch(() => fail('the second console listens for draft events'));
  await other.frameLocator('#preview').locator(`text=${heading}`).waitFor({ timeout: 15000 });
  const second = `Saved by the first editor ${Date.now()}`;
  await page.locator('#setting-heading').fill(second);
  await waitStatus('Draft saved');
  await other.frameLocator('#preview').locator(`text=${second}`).waitFor({ timeout: 10000 })
    .catch(() => fail("the second console's preview refreshed after the first one saved"));
  if ((await other.locator('#setting-heading').inputValue()) !== second) fail('the second console shows the saved settings');
  await other.screenshot({ path: join(shots, `${String(++step).padStart(2, '0')}-second-console-refreshed.png`), fullPage: true });
  console.log(`screenshot ${join(shots, `${String(step).padStart(2, '0')}-second-console-refreshed.png`)}`);
  await other.close();

  // Another editor saves 0.5 s after this console's own save: this console's preview refreshes
  // all the same (it knows its own saves by the id it gave them, not by a time window).
  doingNow('7b another save right after our own');
  const heroId = await page.locator('#blocks li.selected').getAttribute('data-block-id');
  const ownSaved = page.waitForResponse((r) => r.request().method() === 'PATCH' && r.url().includes(`/blocks/${heroId}`), { timeout: 15000 });
  await page.locator('#setting-heading').fill(`Saved here first ${Date.now()}`);
  await ownSaved;
  await page.waitForTimeout(500);
  const third = `Saved by another editor right after ${Date.now()}`;
  const res = await fetch(`http://127.0.0.1:${new URL(base).port}/admin/api/v1/stores/demo/pages/home/blocks/${heroId}`, {
    method: 'PATCH', body: JSON.stringify({ config: { heading: third } }),
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
  });
  if (res.status !== 200) fail(`the other editor's save: ${res.status} ${await res.text()}`);
  await preview.locator(`text=${third}`).waitFor({ timeout: 10000 })
    .catch(() => fail("the preview refreshed for another editor's save 0.5 s after this console's own"));
  if ((await page.locator('#setting-heading').inputValue()) !== third) fail("the form shows the other editor's save");
  // Nothing of this console's saves it again over the other editor's (the field that had the
  // focus when the form was redrawn fires no save).
  await page.waitForTimeout(1500);
  const draft = await (await fetch(`http://127.0.0.1:${new URL(base).port}/admin/api/v1/stores/demo/pages/home`, {
    headers: { authorization: `Bearer ${token}` },
  })).json();
  const kept = (draft.draft.blocks.find((b) => b.id === heroId) || {}).config?.heading;
  if (kept !== third) fail(`the other editor's save was overwritten: the draft says ${JSON.stringify(kept)}`);
  await shot('other-save-right-after-own');

  // Every other screen draws (no error box): pages, theme, blog, products, webhooks and sync.
  doingNow('every screen draws');
  for (const [hash, id] of [['pages', '#pages'], ['theme', '#template'], ['posts', 'details'], ['products', '#products'], ['feeds', '#sync-status']]) {
    await page.goto(`${base}/admin/#/${hash}`);
    await page.locator(`main ${id}`).first().waitFor({ timeout: 10000 });
    if (await page.locator('main .error').count()) fail(`the ${hash} screen shows an error: ${await page.locator('main .error').textContent()}`);
  }
  await shot('feeds');

  // Staff: the owner adds an editor; the editor logs in with their own name and password and
  // publishes; the audit log shows the publish under the editor's name.
  doingNow('staff: editor logs in and publishes');
  const editor = `edna${Date.now() % 100000}`;
  const editorPassword = 'edna has a long password';
  await page.goto(`${base}/admin/#/staff`);
  await page.locator('#add-staff').waitFor({ timeout: 10000 });
  await page.locator('#staff-name').fill(editor);
  await page.locator('#staff-role').selectOption('editor');
  await page.locator('#staff-password').fill(editorPassword);
  await page.locator('#add-staff button[type=submit]').click();
  await page.locator(`#staff tr[data-name="${editor}"]`).waitFor({ timeout: 10000 });
  const viewer = `vic${Date.now() % 100000}`;
  const viewerPassword = 'vic has a long password';
  await page.locator('#staff-name').fill(viewer);
  await page.locator('#staff-role').selectOption('viewer');
  await page.locator('#staff-password').fill(viewerPassword);
  await page.locator('#add-staff button[type=submit]').click();
  await page.locator(`#staff tr[data-name="${viewer}"]`).waitFor({ timeout: 10000 });
  if (await page.locator('#own-password').count()) fail('the admin token has no password of its own to change');
  await shot('staff-added');
  const edContext = await browser.newContext({ viewport: { width: 1600, height: 1000 } });
  const ed = watch(await edContext.newPage(), 'editor');
  // The editor's overview answers late (held back 2 s here; a loaded machine once did it by
  // chance): they open the page editor meanwhile, and that screen must stay the one shown.
  await edContext.route('**/admin/api/v1/stores/*/stats', async (r) => {
    await new Promise((done) => setTimeout(done, 2000));
    await r.continue().catch(() => {});
  });
  await ed.goto(base + '/admin/');
  await ed.locator('#login-name').fill(editor);
  await ed.locator('#login-password').fill(editorPassword);
  const overviewAnswered = ed.waitForEvent('requestfinished', { predicate: (r) => r.url().endsWith('/stats'), timeout: 30000 });
  await ed.locator('#staff-login button[type=submit]').click();
  await ed.locator('nav #logout').waitFor({ timeout: 10000 });
  if (!((await ed.locator('#whoami').textContent()) || '').includes('editor')) fail('the console shows the editor their role');
  await ed.goto(base + '/admin/#/pages/home');
  await ed.locator('main[data-ready="#/pages/home"] #publish').waitFor({ timeout: 10000 });
  // Once the held-back overview has answered (and its script had a moment to draw), the
  // editor is still on screen.
  await overviewAnswered;
  await ed.waitForTimeout(300);
  await ed.locator('main[data-ready="#/pages/home"] #publish').click({ timeout: 10000 });
  await ed.waitForFunction(() => (document.getElementById('status')?.textContent || '').includes('Published version'), null, { timeout: 15000 })
    .catch(() => fail('the editor could publish'));
  await ed.goto(base + '/admin/#/staff');
  await ed.locator('main #staff').waitFor({ timeout: 10000 });
  if (await ed.locator('#add-staff').count()) fail("an editor's console offers to add staff");
  if (/\bfalse\b/.test(await ed.locator('main').innerText())) fail('the staff screen shows a stray "false"');
  await ed.screenshot({ path: join(shots, `${String(++step).padStart(2, '0')}-editor-published.png`), fullPage: true });

  // The editor changes their own password: a wrong current one is refused; then this session
  // goes on (re-issued) and the new password logs in.
  doingNow('staff: own password');
  await ed.locator('#own-current').fill('not the password at all');
  await ed.locator('#own-new').fill('edna has a newer password');
  await ed.locator('#own-password button[type=submit]').click();
  await ed.locator('#own-password-status.bad', { hasText: 'current password is wrong' }).waitFor({ timeout: 10000 })
    .catch(() => fail('a wrong current password is refused on the form'));
  await ed.locator('#own-current').fill(editorPassword);
  await ed.locator('#own-new').fill('edna has a newer password');
  await ed.locator('#own-password button[type=submit]').click();
  await ed.locator('#own-password-status.good', { hasText: 'password is changed' }).waitFor({ timeout: 10000 })
    .catch(() => fail('the own password form changes the password'));
  await ed.screenshot({ path: join(shots, `${String(++step).padStart(2, '0')}-own-password-changed.png`), fullPage: true });
  await ed.reload();
  await ed.locator('nav #logout').waitFor({ timeout: 10000 }).catch(() => fail('the session that changed the password goes on'));
  await ed.locator('main[data-ready="#/staff"] #own-password').waitFor({ timeout: 10000 });
  await edContext.close();

  // A viewer: the page editor is read-only (the code box takes no typing, the settings form
  // is disabled, Save, Publish and the block tools are disabled with a tooltip).
  doingNow('viewer: read-only editor');
  const viewContext = await browser.newContext({ viewport: { width: 1600, height: 1000 } });
  const vw = watch(await viewContext.newPage(), 'viewer');
  await vw.goto(base + '/admin/');
  await vw.locator('#login-name').fill(viewer);
  await vw.locator('#login-password').fill(viewerPassword);
  await vw.locator('#staff-login button[type=submit]').click();
  await vw.locator('nav #logout').waitFor({ timeout: 10000 });
  await vw.goto(base + '/admin/#/pages/seed-examples');
  await vw.locator('main[data-ready="#/pages/seed-examples"] #code .cm-content').waitFor({ timeout: 10000 });
  const before = await vw.locator('#code .cm-content').textContent();
  await vw.locator('#code .cm-content').click();
  await vw.keyboard.press('Control+A');
  await vw.keyboard.press('Delete');
  await vw.keyboard.type('typed by a viewer');
  if ((await vw.locator('#code .cm-content').textContent()) !== before) fail("a viewer's typing changed the code box");
  if ((await vw.locator('#code .cm-content').getAttribute('contenteditable')) !== 'false') fail('the code box is not editable for a viewer');
  for (const sel of ['#save', '#publish', '#add-block', '#blocks button.delete', '#blocks button.duplicate', '#blocks button.down']) {
    const b = vw.locator(sel).first();
    if (!(await b.isVisible())) fail(`${sel} is shown to the viewer (disabled)`);
    if (!(await b.isDisabled())) fail(`${sel} is disabled for a viewer`);
    if (!((await b.getAttribute('title')) || '').includes('Viewers')) fail(`${sel} says why in its tooltip`);
  }
  if (/\bfalse\b/.test(await vw.locator('main').innerText())) fail('the editor shows a stray "false"');
  await vw.evaluate(() => getSelection()?.removeAllRanges());
  await vw.screenshot({ path: join(shots, `${String(++step).padStart(2, '0')}-viewer-read-only-code.png`), fullPage: true });
  await vw.goto(base + '/admin/#/pages/home');
  await vw.locator('main[data-ready="#/pages/home"] #settings-form #setting-heading').waitFor({ timeout: 10000 });
  if (!(await vw.locator('#setting-heading').isDisabled())) fail("the settings form takes a viewer's typing");
  const writes = [];
  vw.on('request', (r) => { if (r.method() !== 'GET') writes.push(`${r.method()} ${r.url()}`); });
  await vw.locator('#publish').click({ force: true });
  await vw.waitForTimeout(500);
  if (writes.length) fail(`a viewer's disabled buttons sent ${writes.join(', ')}`);
  await vw.goto(base + '/admin/#/staff');
  await vw.locator('main[data-ready="#/staff"] #own-password').waitFor({ state: 'visible', timeout: 10000 })
    .catch(() => fail('a viewer can change their own password'));
  await viewContext.close();
  await page.goto(`${base}/admin/#/audit`);
  await page.locator('#audit tbody tr').filter({ hasText: editor }).filter({ hasText: 'page.publish' }).first().waitFor({ timeout: 10000 })
    .catch(() => fail("the audit log shows the editor's publish"));
  await shot('audit');

  // The storefront visits above (the "live" tab) reach today's visitors on the overview once
  // their batch arrives (every few seconds).
  doingNow('visitors today');
  const deadline = Date.now() + 20000;
  let visitors = 0;
  while (Date.now() < deadline) {
    await page.goto(`${base}/admin/#/overview`);
    await page.reload();
    await page.locator('#stat-visitors').waitFor({ timeout: 10000 });
    visitors = Number(await page.locator('#stat-visitors').textContent());
    if (visitors > 0) break;
    await page.waitForTimeout(1000);
  }
  if (!(visitors > 0)) fail('the storefront visits show as visitors today');
  await shot('overview-visitors');

  // Log out: the console asks for the token again.
  doingNow('log out');
  await page.locator('#logout').click();
  await page.locator('#token').waitFor({ timeout: 10000 });
  if ((await context.cookies(base + '/admin/')).some((c) => c.name === 'vitrina_console')) fail('logout removes the cookie');
  const csp = problems.filter((p) => /Content Security Policy/i.test(p));
  if (csp.length) fail(`the console broke its own policy: ${csp.join('\n')}`);
  console.log('console flow ok');
} catch (e) {
  // The failing step's artefacts: each page still open as it is now, and the log.
  log.push(`FAILED while ${doing}: ${e && e.stack ? e.stack : e}`);
  for (const [name, p] of pages) {
    if (p.isClosed()) continue;
    const file = join(shots, `FAILED-${name}.png`);
    await p.screenshot({ path: file, fullPage: true, timeout: 10000 }).then(() => console.log(`failure screenshot ${file}`), (err) => log.push(`no screenshot of ${name}: ${err}`));
  }
  writeFileSync(join(shots, 'console-log.txt'), log.join('\n') + '\n');
  console.log(`failed while ${doing}; console log in ${join(shots, 'console-log.txt')}`);
  throw e;
} finally {
  await browser.close();
}
