// Accessibility of the web page: axe-core (WCAG 2.0/2.1 A and AA rules) run inside Chromium on
// each main view of the page (empty start page, search results, filters and query terms, the
// duplicates view, details dialog, uploads and ingest jobs), at desktop and phone size, in the light and the dark colour scheme. Any serious or critical
// violation fails the test and is listed with its rule id and the selectors of the elements.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import {
  launch, withPage, api, health, imageCount, uniquePhoto, writePhotos, axeViolations, formatViolations, settle,
  IMAGE_ROOT, RUN_ID, DESKTOP, PHONE,
} from './lib.mjs';

const T = { timeout: 120_000 };
const QUERY = 'a bus on a street';

let browser;

before(async () => {
  const h = await health();
  assert.equal(h.model.state, 'ready', 'the server must be ready before the tests start');
  if (IMAGE_ROOT) {
    // Enough images for a full grid, and one finished job with a failure, so the job list shows
    // its badge, counts, rate line and failure details.
    const dirName = 'a11y-' + RUN_ID;
    writePhotos(path.join(IMAGE_ROOT, dirName), [50, 51, 52, 53, 54, 55]);
    // One photo at a second path, so that the duplicates view has a group to show.
    const twin = uniquePhoto(50);
    fs.writeFileSync(path.join(IMAGE_ROOT, dirName, 'twin.jpg'), twin.bytes);
    fs.writeFileSync(path.join(IMAGE_ROOT, dirName, 'twin-copy.jpg'), twin.bytes);
    fs.writeFileSync(path.join(IMAGE_ROOT, dirName, 'broken.jpg'), 'not a jpeg');
    const r = await api('POST', '/ingest/directory', { path: dirName, recursive: true });
    assert.equal(r.status, 202, 'POST /ingest/directory: ' + r.text);
    const deadline = Date.now() + 60_000;
    for (;;) {
      const job = (await api('GET', '/jobs/' + r.json.id)).json;
      if (!['queued', 'running', 'cancelling'].includes(job.state)) break;
      assert.ok(Date.now() < deadline, 'the seed job did not finish in 60 s');
      await new Promise((res) => setTimeout(res, 250));
    }
  }
  assert.ok((await imageCount()) >= 3, 'need at least 3 indexed images (set VQ_IMAGE_ROOT to let the tests add some)');
  browser = await launch();
});

after(async () => {
  if (browser) await browser.close();
});

async function showResults(page) {
  await page.locator('#q').fill(QUERY);
  await page.locator('#q').press('Enter');
  await page.waitForFunction(() => {
    const grid = document.getElementById('results');
    return grid.getAttribute('aria-busy') === 'false' && grid.querySelectorAll('.card').length > 0
      && Array.from(grid.querySelectorAll('.thumb')).every((t) => t.classList.contains('is-loaded') || t.classList.contains('is-missing'));
  });
}

/** Every main view of the page, each checked with axe in turn; returns the failures of all. */
async function auditAllViews(page) {
  const found = [];
  const audit = async (view) => {
    await settle(page);
    for (const v of await axeViolations(page)) found.push({ view, ...v });
  };
  await page.waitForSelector('#status-model[data-state="ready"]');
  if (IMAGE_ROOT) await page.waitForSelector('#jobs .job[data-state="completed"]');
  await audit('start page (empty state, job list)');

  if (IMAGE_ROOT) {
    const failures = page.locator('#jobs .job-failures:not([hidden]) summary').first();
    if (await failures.count()) await failures.click();
  }
  await page.locator('#file-input').setInputFiles({ name: 'a11y-' + RUN_ID + '.jpg', mimeType: 'image/jpeg', buffer: uniquePhoto(60, 'a11y').bytes });
  await page.waitForFunction(() => ['ok', 'duplicate', 'error'].includes(document.querySelector('#uploads .upload')?.dataset.status), null, { timeout: 30_000 });
  await page.locator('#job-path').fill('/etc');
  await page.locator('#job-submit').click();
  await page.locator('#job-error').waitFor();
  await audit('upload row, failed job details, job form error');

  await showResults(page);
  await audit('search results');

  // Filters set, a date order, and "more / less like this" chips in the query.
  await page.waitForSelector('#f-camera[data-loaded="true"]', { state: 'attached' });
  // On a phone the filter bar opens from its button.
  if (await page.locator('#filters-toggle').isVisible()) {
    await page.locator('#filters-toggle').click();
    assert.equal(await page.locator('#filters-toggle').getAttribute('aria-expanded'), 'true');
  }
  await page.locator('label.check', { hasText: 'JPEG' }).click();
  await page.locator('label[for="sort-newest"]').click();
  await page.locator('#results .grid-item').first().locator('[data-term="more"]').click();
  await page.waitForSelector('#query-terms .term-pos');
  await page.locator('#results .grid-item').nth(1).locator('[data-term="less"]').click();
  await page.waitForSelector('#query-terms .term-neg');
  await page.waitForFunction(() => document.getElementById('results').getAttribute('aria-busy') === 'false');
  await audit('filters, order, query term chips');

  await page.locator('#view-dups').click();
  await page.waitForFunction(() => document.getElementById('dups-list').getAttribute('aria-busy') === 'false'
    && (document.querySelector('.dup-group') || !document.getElementById('dups-error').hidden || /No duplicates/.test(document.getElementById('dups-meta').textContent)));
  await page.waitForFunction(() => Array.from(document.querySelectorAll('.dup-group .thumb'))
    .every((t) => t.classList.contains('is-loaded') || t.classList.contains('is-missing')));
  await audit('duplicates view');
  await page.locator('#view-search').click();

  await page.locator('#results .card').first().click();
  await page.waitForSelector('#detail[open]');
  await page.waitForSelector('#detail-meta [data-field="id"]');
  await page.locator('#detail-delete').click();
  await audit('details dialog (with the delete confirmation)');
  return found;
}

for (const scheme of ['light', 'dark']) {
  for (const [size, viewport] of [['desktop', DESKTOP], ['phone', PHONE]]) {
    describe(`accessibility, ${scheme} colours, ${size}`, () => {
      test(`axe-core finds no serious or critical WCAG 2 A/AA violation (${scheme}, ${size})`, T, async () => {
        await withPage(browser, `a11y-${scheme}-${size}`, async (page) => {
          await page.emulateMedia({ colorScheme: scheme });
          const found = await auditAllViews(page);
          const elements = found.reduce((n, v) => n + v.nodes.length, 0);
          assert.equal(elements, 0, formatViolations(found));
        }, { viewport });
      });
    });
  }
}
