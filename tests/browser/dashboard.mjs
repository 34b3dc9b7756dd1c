// Drives fluid's dashboard in Debian's headless Chromium through playwright-core (which
// brings no browser of its own): loads the page through the `/` redirect, switches a task
// off and cancels a run by clicking, waits until the page shows both, opens the run's
// detail and saves a full-page screenshot. tests/tests/dashboard.rs runs it against a real
// host and then checks the results through the HTTP API.
//
//   node dashboard.mjs --url http://127.0.0.1:PORT --screenshot out.png [--disable-task NAME] [--cancel-run ID]
//
// Without --disable-task and --cancel-run it only loads the page and takes the screenshot.
// Exits 0 when every step worked; otherwise 1 with the failing step, the page's errors and
// a screenshot of the page as it was.

import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const { values: opts } = parseArgs({
  options: {
    url: { type: 'string' },
    screenshot: { type: 'string' },
    'disable-task': { type: 'string' },
    'cancel-run': { type: 'string' },
    'escaped-run': { type: 'string' },
    'enable-plugin': { type: 'string' },
    // READ,OPERATE: the host wants tokens; give the read one, then the operate one.
    tokens: { type: 'string' },
    chromium: { type: 'string', default: process.env.CHROMIUM || '/usr/bin/chromium' },
    timeout: { type: 'string', default: '30000' },
  },
});
if (!opts.url || !opts.screenshot) {
  console.error('usage: node dashboard.mjs --url BASE --screenshot FILE [--disable-task NAME] [--cancel-run ID]');
  process.exit(2);
}
const timeout = Number(opts.timeout);

const browser = await chromium.launch({
  executablePath: opts.chromium,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
page.setDefaultTimeout(timeout);

// The cancel button asks for confirmation.
page.on('dialog', (d) => d.accept());
const pageErrors = [];
page.on('pageerror', (e) => pageErrors.push(`uncaught: ${e.message}`));
page.on('console', (m) => {
  // Chromium logs a failed load without its URL; the response handler names it.
  if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) pageErrors.push(`console: ${m.text()}`);
});
page.on('response', (r) => {
  // Before it has a token, the page's requests are refused: that is what makes it ask.
  if (opts.tokens && r.status() === 401) return;
  if (r.status() >= 400) pageErrors.push(`${r.request().method()} ${r.url()}: ${r.status()}`);
});
page.on('requestfailed', (r) => pageErrors.push(`${r.method()} ${r.url()}: ${r.failure()?.errorText}`));

let step = 'start';
function log(what) {
  step = what;
  console.log(`dashboard.mjs: ${what}`);
}

try {
  if (opts.tokens) {
    const [read, operate] = opts.tokens.split(',');
    log('load the page of a host that wants tokens');
    await page.goto(`${opts.url}/`);
    await page.getByTestId('token-form').waitFor();
    log('give it a read token');
    await page.getByTestId('token-input').fill(read);
    await page.getByTestId('token-use').click();
    await page.getByTestId('token-role').filter({ hasText: /\(read\)/ }).waitFor();
    await page.getByTestId('tasks-body').locator('tr').first().waitFor();
    if (await page.getByTestId('task-run-ping').isVisible()) throw new Error('a read token is offered "Run now"');
    if (await page.getByTestId('task-toggle-ping').isVisible()) throw new Error('a read token is offered the enable switch');
    log('give it an operate token (the tab keeps it for its session)');
    await page.evaluate((t) => sessionStorage.setItem('fluid-token', t), operate);
    await page.reload();
    await page.getByTestId('token-role').filter({ hasText: /\(operate\)/ }).waitFor();
    await page.getByTestId('task-run-ping').click();
    await page.getByTestId('message-info').filter({ hasText: /ping/ }).first().waitFor();
    if (pageErrors.length) throw new Error(`the page logged errors:\n  ${pageErrors.join('\n  ')}`);
    await page.screenshot({ path: opts.screenshot, fullPage: true });
    console.log('dashboard.mjs: ok');
    process.exit(0);
  }
  log(`load ${opts.url}/`);
  await page.goto(`${opts.url}/`);
  if (new URL(page.url()).pathname !== '/ui/') throw new Error(`/ did not redirect to /ui/ but to ${page.url()}`);
  // The first refresh has rendered the tables.
  await page.getByTestId('tasks-body').locator('tr').first().waitFor();
  await page.getByTestId('plugins-body').locator('tr').first().waitFor();
  await page.locator('[data-testid="throughput-chart"] svg').waitFor();

  const task = opts['disable-task'];
  if (task) {
    log(`switch task ${task} off`);
    const toggle = page.getByTestId(`task-toggle-${task}`);
    if (!(await toggle.isChecked())) throw new Error(`task ${task} is not enabled to begin with`);
    await toggle.uncheck();
    // Shown once the PATCH answered and the row was rendered from its response.
    await page.getByTestId(`task-enabled-${task}`).filter({ hasText: /^disabled$/ }).waitFor();
  }

  const run = opts['cancel-run'];
  if (run) {
    log(`cancel run ${run}`);
    await page.getByTestId(`run-cancel-${run}`).click();
    // The db plugin stores the run's end; the history refreshes every 2 s.
    await page.getByTestId(`run-state-${run}`).filter({ hasText: /^aborted$/ }).waitFor();
    await page.getByTestId(`run-cancel-${run}`).waitFor({ state: 'detached' });

    log(`open run ${run}`);
    await page.getByTestId(`run-row-${run}`).locator('td').nth(1).click();
    await page.getByTestId('run-detail-id').filter({ hasText: run }).waitFor();
    await page.getByTestId('run-detail-state').filter({ hasText: /^aborted$/ }).waitFor();
  }

  // A run whose error is HTML (any plugin or task can write one): shown as text, never run.
  const escaped = opts['escaped-run'];
  if (escaped) {
    log(`open run ${escaped}, whose error is markup`);
    await page.getByTestId(`run-row-${escaped}`).locator('td').nth(1).click();
    await page.getByTestId('run-detail-id').filter({ hasText: escaped }).waitFor();
    const shown = await page.locator('#run-detail-body pre.error').textContent();
    if (!shown.includes('<img src=x onerror=')) throw new Error(`the error is not shown as text: ${shown}`);
    const injected = await page.evaluate(() => [window.__injected, document.querySelectorAll('#injected').length]);
    if (injected[0] !== undefined || injected[1] !== 0) throw new Error(`markup from a run's error reached the page: ${injected}`);
  }

  // A quarantined plugin, enabled again with its held events skipped (they are what it fails on).
  const plugin = opts['enable-plugin'];
  if (plugin) {
    log(`enable quarantined plugin ${plugin}, skipping its held events`);
    await page.getByTestId(`plugin-state-${plugin}`).filter({ hasText: /^quarantined$/ }).waitFor();
    await page.getByTestId(`plugin-enable-skip-${plugin}`).click();
    await page.getByTestId(`plugin-state-${plugin}`).filter({ hasText: /^active$/ }).waitFor();
    await page.getByTestId(`plugin-enable-skip-${plugin}`).waitFor({ state: 'detached' });
  }

  const errors = await page.getByTestId('message-error').allTextContents();
  if (errors.length) throw new Error(`the page shows errors: ${errors.join(' | ')}`);
  if (pageErrors.length) throw new Error(`the page logged errors:\n  ${pageErrors.join('\n  ')}`);

  // The notes the clicks left ("ping disabled", ...) float over the page: dismiss them.
  // (In one go in the page: a note may also vanish by itself at any moment.)
  await page.evaluate(() => document.querySelectorAll('[data-testid="message-info"] button').forEach((b) => b.click()));
  await page.getByTestId('message-info').first().waitFor({ state: 'detached' });

  log(`screenshot ${opts.screenshot}`);
  await page.screenshot({ path: opts.screenshot, fullPage: true });
  console.log('dashboard.mjs: ok');
} catch (e) {
  console.error(`dashboard.mjs: failed at "${step}": ${e.message}`);
  if (pageErrors.length) console.error(`page errors:\n  ${pageErrors.join('\n  ')}`);
  await page.screenshot({ path: opts.screenshot, fullPage: true }).catch(() => {});
  process.exitCode = 1;
} finally {
  await browser.close();
}
