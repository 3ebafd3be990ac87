// End-to-end tests of the web page served at `/`, in headless Debian Chromium against a running
// VisionQuery server. The test model has random weights, so no test assumes what a text "means":
// the page must show exactly what `POST /search` answers, in the same order with the same scores.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import {
  launch, withPage, api, health, imageCount, searchApi, formatScore, uniquePhoto, writePhotos,
  BASE, IMAGE_ROOT, RUN_ID, DESKTOP, PHONE, SCREENSHOT, ARTIFACTS,
} from './lib.mjs';

const T = { timeout: 90_000 };
const QUERY = 'people walking on a city street';

let browser;
const seeded = [];   // ids indexed by `before`

/** Waits until the grid shows the answer to the current search; returns what the cards show. */
async function shownResults(page) {
  await page.waitForFunction(() => {
    const grid = document.getElementById('results');
    return grid.getAttribute('aria-busy') === 'false' && grid.querySelectorAll('.card').length > 0;
  });
  return page.$$eval('#results .card', (cards) => cards.map((c) => ({
    id: c.dataset.id,
    score: c.querySelector('.score').textContent.trim(),
    name: c.querySelector('.card-name').textContent.trim(),
    src: c.querySelector('img').getAttribute('src'),
  })));
}

async function typeQuery(page, text) {
  await page.locator('#q').click();
  await page.locator('#q').fill('');
  await page.locator('#q').pressSequentially(text, { delay: 15 });
}

function expectSameAsApi(shown, hits) {
  assert.ok(hits.length > 0, 'the API returned no hits');
  assert.deepEqual(shown.map((c) => c.id), hits.map((h) => h.id), 'same ids in the same order as POST /search');
  assert.deepEqual(shown.map((c) => c.score), hits.map((h) => formatScore(h.score)), 'same scores as POST /search');
  assert.deepEqual(shown.map((c) => c.name), hits.map((h) => path.basename(h.path)), 'file names');
}

before(async () => {
  const h = await health();
  assert.equal(h.model.state, 'ready', 'the server must be ready before the tests start');
  if (IMAGE_ROOT) {
    const files = writePhotos(path.join(IMAGE_ROOT, 'seed-' + RUN_ID), [0, 1, 2, 3, 4, 5]);
    for (const file of files) {
      const r = await api('POST', '/ingest/image', { path: file });
      assert.equal(r.status, 200, 'POST /ingest/image ' + file + ': ' + r.text);
      seeded.push(r.json.id);
    }
  }
  assert.ok((await imageCount()) >= 3, 'need at least 3 indexed images (set VQ_IMAGE_ROOT to let the tests add some)');
  browser = await launch();
});

after(async () => {
  if (browser) await browser.close();
});

describe('status bar', () => {
  test('page loads offline-clean; status bar shows model ready, image count and version', T, async () => {
    await withPage(browser, 'status', async (page, problems) => {
      const h = await health();
      await page.waitForSelector('#status-model[data-state="ready"]');
      assert.equal((await page.textContent('#status-model-text')).trim(), 'Model ready');
      await page.waitForFunction((n) => document.getElementById('status-images-count').textContent.replace(/\D/g, '') === String(n), h.index.images);
      assert.equal((await page.textContent('#status-version')).trim(), 'v' + h.version);
      assert.equal(await page.title(), 'VisionQuery');
      // Keyboard-first page: the search box has a label, the empty state invites a search.
      assert.ok(await page.locator('label[for="q"]').count());
      assert.match(await page.textContent('#empty-title'), /Search \d+ images?/);
      await page.waitForLoadState('networkidle');
      assert.deepEqual(problems.foreignRequests, [], 'nothing is loaded from outside the server');
      assert.deepEqual(problems.consoleErrors.filter((e) => !/404|Failed to load resource/.test(e)), [], 'no script errors');
    });
  });
});

describe('search', () => {
  test('typing shows the thumbnail grid of POST /search: same ids, order and scores (debounced)', T, async () => {
    await withPage(browser, 'search', async (page) => {
      const searches = [];
      page.on('request', (req) => { if (req.url() === BASE + '/search') searches.push(req.postDataJSON()); });
      await typeQuery(page, QUERY);
      const shown = await shownResults(page);
      const hits = await searchApi({ query: QUERY, top_k: 24 });
      expectSameAsApi(shown, hits);
      assert.ok(searches.length >= 1 && searches.length <= 3, 'typing ' + QUERY.length + ' characters sent ' + searches.length + ' searches (debounce)');
      assert.deepEqual(searches[searches.length - 1], { query: QUERY, top_k: 24 });
      for (const c of shown) {
        assert.equal(c.src, '/images/' + c.id + '/thumbnail', 'cards use the thumbnail endpoint');
      }
      assert.equal(await page.locator('#results img[src*="/file"]').count(), 0, 'no full-size image in the grid');
      assert.match(await page.textContent('#results-title'), new RegExp(QUERY));
      assert.match(await page.textContent('#results-meta'), new RegExp('^' + hits.length + ' results?'));
    });
  });

  test('thumbnails come from the cached thumbnail endpoint and load', T, async () => {
    await withPage(browser, 'thumbnails', async (page) => {
      const thumbs = [];
      page.on('response', (res) => { if (/\/images\/[^/]+\/thumbnail/.test(res.url())) thumbs.push(res); });
      await typeQuery(page, QUERY);
      const shown = await shownResults(page);
      await page.waitForFunction(() => Array.from(document.querySelectorAll('#results .thumb'))
        .every((t) => t.classList.contains('is-loaded') || t.classList.contains('is-missing')));
      const missing = await page.locator('#results .thumb.is-missing').count();
      const statuses = thumbs.map((r) => r.status());
      assert.equal(missing, 0, 'thumbnails that failed to load: ' + missing + ' of ' + shown.length + ' (statuses ' + JSON.stringify(statuses) + ')');
      const sizes = await page.$$eval('#results .thumb img', (imgs) => imgs.map((i) => [i.naturalWidth, i.naturalHeight]));
      for (const [w, h] of sizes) assert.ok(w > 0 && Math.max(w, h) <= 256, 'thumbnail is at most 256 px: ' + w + 'x' + h);
      const r = await api('GET', '/images/' + shown[0].id + '/thumbnail', undefined, { raw: true });
      assert.equal(r.status, 200);
      assert.match(r.headers.get('content-type') || '', /^image\/jpeg/);
    });
  });

  test('an empty query shows nothing; clearing the box clears the results', T, async () => {
    await withPage(browser, 'empty-query', async (page) => {
      const searches = [];
      page.on('request', (req) => { if (req.url() === BASE + '/search') searches.push(req.postDataJSON()); });
      await page.locator('#q').fill('   ');
      await page.locator('#q').press('Enter');
      await page.waitForTimeout(400);
      assert.equal(searches.length, 0, 'a blank query is not sent');
      assert.equal(await page.locator('#results .card').count(), 0);
      assert.ok(await page.locator('#search-error').isHidden());
      assert.ok(await page.locator('#empty').isVisible());
      await typeQuery(page, 'a cat');
      await shownResults(page);
      await page.locator('#q').fill('');
      await page.waitForFunction(() => document.querySelectorAll('#results .card').length === 0);
      assert.ok(await page.locator('#empty').isVisible());
    });
  });
});

describe('detail view', () => {
  test('clicking a result opens its metadata; Escape closes; "More like this" adds it to the text query', T, async () => {
    await withPage(browser, 'detail', async (page) => {
      await typeQuery(page, QUERY);
      const shown = await shownResults(page);
      const target = shown[1] || shown[0];
      await page.locator('#results .card[data-id="' + target.id + '"]').click();
      await page.waitForSelector('#detail[open]');
      const info = (await api('GET', '/images/' + target.id)).json;
      await page.waitForSelector('#detail-meta [data-field="id"]');
      const meta = await page.$$eval('#detail-meta .meta-row', (rows) => Object.fromEntries(rows.map((r) => [r.dataset.field, r.querySelector('dd').textContent])));
      assert.equal(meta.id, info.id);
      assert.equal(meta.path, info.path);
      assert.equal(meta.dimensions, info.width + ' × ' + info.height + ' px');
      assert.equal(meta.format, info.format.toUpperCase());
      assert.match(meta.size, new RegExp(String(info.bytes).replace(/\B(?=(\d{3})+(?!\d))/g, ',?')));
      assert.ok(meta.indexed && meta.indexed.length > 0, 'ingested_at shown');
      assert.equal(await page.locator('#detail-title').textContent(), path.basename(info.path));
      assert.equal(await page.locator('#detail-score').textContent(), 'Score ' + target.score);
      assert.equal(await page.locator('#detail-img').getAttribute('src'), '/images/' + target.id + '/file');
      await page.waitForFunction(() => document.getElementById('detail-img').naturalWidth > 0);
      assert.equal(await page.locator('#detail-img').evaluate((i) => i.naturalWidth), info.width, 'full image in the detail view');

      await page.keyboard.press('Escape');
      await page.waitForSelector('#detail:not([open])', { state: 'attached' });
      await page.waitForFunction((id) => document.activeElement.dataset.id === id, target.id, { timeout: 2000 })
        .catch(() => assert.fail('focus returns to the card'));

      // With a text in the box, "More like this" adds the image to the query as a positive term.
      await page.locator('#results .card[data-id="' + target.id + '"]').click();
      await page.waitForSelector('#detail[open]');
      const combinedBody = { query: QUERY, top_k: 24, positive: [{ image_id: target.id, weight: 1 }] };
      const combined = page.waitForRequest((r) => r.url() === BASE + '/search' && (r.postDataJSON().positive || []).length === 1);
      await page.locator('#detail-similar').click();
      assert.deepEqual((await combined).postDataJSON(), combinedBody);
      await page.waitForSelector('#detail:not([open])', { state: 'attached' });
      await page.waitForSelector('#query-terms .term-pos[data-id="' + target.id + '"]');
      await page.waitForFunction(() => document.getElementById('results').getAttribute('aria-busy') === 'false');
      expectSameAsApi(await shownResults(page), await searchApi(combinedBody));
      assert.equal(await page.locator('#q').inputValue(), QUERY, 'the text stays in the box');
    });
  });

  test('"More like this" without a text searches by the image, which ranks first at ≈1.0', T, async () => {
    await withPage(browser, 'detail-similar', async (page) => {
      // No text: the "Newest" order alone lists the indexed images (GET /images).
      await page.locator('label[for="sort-newest"]').click();
      await page.waitForFunction(() => document.getElementById('results-title').textContent === 'Images' && document.querySelectorAll('#results .card').length > 0);
      const target = await page.locator('#results .card').first().getAttribute('data-id');
      const info = (await api('GET', '/images/' + target)).json;
      await page.locator('#results .card').first().click();
      await page.waitForSelector('#detail[open]');
      assert.ok(await page.locator('#detail-less').isHidden(), 'nothing to push away from without a query');
      const similar = page.waitForRequest((r) => r.url() === BASE + '/search' && r.postDataJSON().image_id === target);
      await page.locator('#detail-similar').click();
      assert.deepEqual((await similar).postDataJSON(), { image_id: target, top_k: 24, sort: '-taken_at' });
      await page.locator('label[for="sort-relevance"]').click();
      await page.waitForFunction(() => document.getElementById('results-title').textContent === 'Similar images' && document.getElementById('results').getAttribute('aria-busy') === 'false');
      const alike = await shownResults(page);
      const hits = await searchApi({ image_id: target, top_k: 24 });
      expectSameAsApi(alike, hits);
      // The image itself is the best match at ≈ 1.0 (a pixel-identical twin may tie with it).
      const self = alike.find((c) => c.id === target);
      assert.ok(self, 'the image itself is among the results');
      assert.equal(self.score, alike[0].score, 'the image itself ranks first');
      assert.ok(Math.abs(parseFloat(self.score) - 1) < 0.002, 'its score is ≈ 1.0, got ' + self.score);
      assert.ok(await page.locator('#similar-chip').isVisible());
      assert.equal(await page.locator('#similar-chip-name').textContent(), path.basename(info.path));
      assert.match(page.url(), new RegExp('like=' + target));
    });
  });
});

describe('search with a photo', () => {
  test('a photo from the camera button searches with POST /search/image and is not indexed', T, async () => {
    await withPage(browser, 'photo-search', async (page) => {
      const photo = uniquePhoto(30, 'photo-search');
      const form = new FormData();
      form.append('file', new Blob([photo.bytes], { type: 'image/jpeg' }), 'query.jpg');
      const direct = await api('POST', '/search/image?top_k=24', form);
      assert.equal(direct.status, 200, 'POST /search/image answered ' + direct.status + ': ' + direct.text);
      const before = await imageCount();
      await page.locator('#photo-input').setInputFiles({ name: 'query.jpg', mimeType: 'image/jpeg', buffer: photo.bytes });
      await page.waitForFunction(() => document.getElementById('results-title').textContent === 'Similar images');
      expectSameAsApi(await shownResults(page), direct.json.results);
      assert.equal(await page.locator('#similar-chip-name').textContent(), 'query.jpg');
      assert.match(await page.locator('#similar-chip-img').getAttribute('src'), /^blob:/);
      assert.equal(await imageCount(), before, 'the photo was not added to the index');
      await page.locator('#similar-clear').click();
      assert.equal(await page.locator('#results .card').count(), 0);
      assert.ok(await page.locator('#similar-chip').isHidden());
    });
  });
});

describe('upload', () => {
  test('a JPEG chosen with the file picker is indexed, counted and found', T, async () => {
    await withPage(browser, 'upload', async (page) => {
      const before = await imageCount();
      const photo = uniquePhoto(10, 'upload');
      const filename = 'e2e-upload-' + RUN_ID + '.jpg';
      await page.waitForSelector('#status-model[data-state="ready"]');
      await page.locator('#file-input').setInputFiles({ name: filename, mimeType: 'image/jpeg', buffer: photo.bytes });
      const row = page.locator('#uploads .upload[data-filename="' + filename + '"]');
      await row.waitFor();
      await page.waitForFunction((f) => {
        const li = document.querySelector('#uploads .upload[data-filename="' + f + '"]');
        return li && ['ok', 'duplicate', 'error'].includes(li.dataset.status);
      }, filename, { timeout: 30_000 });
      const status = await row.getAttribute('data-status');
      const text = (await row.locator('.upload-status').textContent()).trim();
      assert.equal(status, 'ok', 'upload result: ' + text);
      assert.equal(text, 'Indexed');
      assert.equal(await row.locator('progress').evaluate((p) => p.value), 100);
      const id = await row.getAttribute('data-id');
      assert.ok(id, 'the row knows the new image id');
      assert.equal((await api('GET', '/images/' + id)).status, 200);
      assert.equal(await imageCount(), before + 1);
      await page.waitForFunction((n) => document.getElementById('status-images-count').textContent.replace(/\D/g, '') === String(n), before + 1);

      // Searching shows it (when the index is small enough that the top 96 hold every image).
      if (before + 1 <= 96) {
        await page.selectOption('#top-k', '96');
        await typeQuery(page, QUERY);
        await shownResults(page);
        await page.locator('#results .card[data-id="' + id + '"]').waitFor();
      }
      // And "Similar" from the upload row ranks it first.
      await row.getByRole('button', { name: /Images similar to/ }).click();
      await page.waitForFunction(() => document.getElementById('results-title').textContent === 'Similar images' && document.getElementById('results').getAttribute('aria-busy') === 'false');
      const alike = await shownResults(page);
      const self = alike.find((c) => c.id === id);
      assert.ok(self && self.score === alike[0].score && Math.abs(parseFloat(self.score) - 1) < 0.002, 'the upload is the best match of itself: ' + JSON.stringify(alike.slice(0, 3)));

      // The same file again: already indexed, nothing added.
      await page.locator('#file-input').setInputFiles({ name: 'again-' + filename, mimeType: 'image/jpeg', buffer: photo.bytes });
      const again = page.locator('#uploads .upload[data-filename="again-' + filename + '"]');
      await page.waitForFunction((f) => ['ok', 'duplicate', 'error'].includes(document.querySelector('#uploads .upload[data-filename="' + f + '"]')?.dataset.status), 'again-' + filename, { timeout: 30_000 });
      assert.equal((await again.locator('.upload-status').textContent()).trim(), 'Already indexed');
      assert.equal(await again.getAttribute('data-id'), id);
      assert.equal(await imageCount(), before + 1);
    });
  });

  test('a non-image dropped on the drop zone shows the server\'s error for that file', T, async () => {
    await withPage(browser, 'upload-error', async (page) => {
      const filename = 'not-an-image-' + RUN_ID + '.jpg';
      const content = 'this is a text file pretending to be a JPEG\n';
      // What the API says about this file, to compare with what the page shows.
      const form = new FormData();
      form.append('files', new Blob([content], { type: 'image/jpeg' }), filename);
      const direct = await api('POST', '/ingest/upload', form);
      assert.equal(direct.status, 200, 'POST /ingest/upload answered ' + direct.status + ': ' + direct.text);
      const expected = direct.json.results[0];
      assert.equal(expected.status, 'error');

      const before = await imageCount();
      const dataTransfer = await page.evaluateHandle(([name, text]) => {
        const dt = new DataTransfer();
        dt.items.add(new File([text], name, { type: 'image/jpeg' }));
        return dt;
      }, [filename, content]);
      await page.dispatchEvent('#dropzone', 'dragenter', { dataTransfer });
      assert.equal(await page.getAttribute('#dropzone', 'data-state'), 'over', 'the zone lights up while dragging');
      await page.dispatchEvent('#dropzone', 'drop', { dataTransfer });
      const row = page.locator('#uploads .upload[data-filename="' + filename + '"]');
      await row.waitFor();
      await page.waitForFunction((f) => document.querySelector('#uploads .upload[data-filename="' + f + '"]')?.dataset.status === 'error', filename, { timeout: 30_000 });
      assert.equal((await row.locator('.upload-status').textContent()).trim(), expected.error.message);
      assert.equal((await row.locator('.alert-code').textContent()).trim(), expected.error.code);
      assert.equal(await page.getAttribute('#dropzone', 'data-state'), 'idle');
      assert.equal(await imageCount(), before);
    });
  });
});

describe('errors are shown to the user', () => {
  test('a 1001-character query shows the API\'s query_too_long message', T, async () => {
    await withPage(browser, 'query-too-long', async (page) => {
      const long = 'a'.repeat(1001);
      const direct = await api('POST', '/search', { query: long, top_k: 24 });
      assert.equal(direct.status, 422);
      assert.equal(direct.json.error.code, 'query_too_long');
      await page.locator('#q').fill(long);
      await page.locator('#q').press('Enter');
      const alert = page.locator('#search-error');
      await alert.waitFor();
      assert.equal((await alert.locator('.alert-message').textContent()).trim(), direct.json.error.message);
      assert.match(await alert.locator('.alert-code').textContent(), /query_too_long · 422/);
      assert.equal(await alert.getAttribute('role'), 'alert');
      assert.equal(await page.locator('#results .card').count(), 0);
    });
  });

  test('a 503 model_loading is shown, and the search runs again once the model is ready (503 mocked)', T, async () => {
    await withPage(browser, 'model-loading', async (page) => {
      let refused = 0;
      await page.route(BASE + '/search', (route) => {
        refused++;
        return route.fulfill({
          status: 503,
          headers: { 'content-type': 'application/json', 'retry-after': '5' },
          body: JSON.stringify({ error: { code: 'model_loading', message: 'the model is still loading' } }),
        });
      });
      await typeQuery(page, QUERY);
      const alert = page.locator('#search-error');
      await alert.waitFor();
      assert.equal((await alert.locator('.alert-message').textContent()).trim(), 'the model is still loading');
      assert.match(await alert.textContent(), /run again by itself/);
      assert.ok(refused >= 1);
      await page.unroute(BASE + '/search');
      // The next /health poll (every few seconds) sees a ready model and re-runs the search.
      const shown = await shownResults(page);
      expectSameAsApi(shown, await searchApi({ query: QUERY, top_k: 24 }));
      assert.ok(await alert.isHidden());
    });
  });

  test('a folder outside the image roots shows the 403 message of POST /ingest/directory', T, async () => {
    await withPage(browser, 'job-forbidden', async (page) => {
      const outside = '/etc';
      const direct = await api('POST', '/ingest/directory', { path: outside, recursive: true });
      assert.equal(direct.status, 403, 'POST /ingest/directory answered ' + direct.status + ': ' + direct.text);
      assert.equal(direct.json.error.code, 'path_outside_roots');
      await page.locator('#job-path').fill(outside);
      await page.locator('#job-submit').click();
      const alert = page.locator('#job-error');
      await alert.waitFor();
      assert.equal((await alert.locator('.alert-message').textContent()).trim(), direct.json.error.message);
      assert.match(await alert.locator('.alert-code').textContent(), /path_outside_roots · 403/);
    });
  });
});

describe('keyboard', () => {
  test('/ focuses the search, Enter searches, arrows and Tab move across cards, Enter opens, Escape closes', T, async () => {
    await withPage(browser, 'keyboard', async (page) => {
      await page.locator('body').click({ position: { x: 5, y: 400 } });
      await page.keyboard.press('/');
      assert.equal(await page.evaluate(() => document.activeElement.id), 'q');
      await page.keyboard.type('a red bus', { delay: 5 });
      await page.keyboard.press('Enter');
      const shown = await shownResults(page);
      assert.ok(shown.length >= 3, 'need three results');
      const focusedId = () => page.evaluate(() => document.activeElement.dataset.id || document.activeElement.id);
      await page.keyboard.press('ArrowDown');
      assert.equal(await focusedId(), shown[0].id, 'Down from the search box reaches the first card');
      await page.keyboard.press('ArrowRight');
      assert.equal(await focusedId(), shown[1].id, 'Right moves to the next card');
      // Tab walks through the card's own buttons ("More", "Less" like this), then the next card.
      await page.keyboard.press('Tab');
      assert.equal(await page.evaluate(() => document.activeElement.dataset.term + ' ' + document.activeElement.closest('.grid-item').dataset.id), 'more ' + shown[1].id);
      await page.keyboard.press('Tab');
      assert.equal(await page.evaluate(() => document.activeElement.dataset.term), 'less');
      await page.keyboard.press('Tab');
      assert.equal(await focusedId(), shown[2].id, 'Tab moves on to the next card');
      await page.keyboard.press('ArrowLeft');
      assert.equal(await focusedId(), shown[1].id, 'Left moves back');
      const cols = await page.evaluate(() => getComputedStyle(document.getElementById('results')).gridTemplateColumns.split(' ').length);
      if (shown.length > cols) {
        await page.keyboard.press('ArrowDown');
        assert.equal(await focusedId(), shown[Math.min(1 + cols, shown.length - 1)].id, 'Down moves one row');
        await page.keyboard.press('ArrowUp');
        assert.equal(await focusedId(), shown[1].id, 'Up moves one row back');
      }
      await page.keyboard.press('Enter');
      await page.waitForSelector('#detail[open]');
      await page.waitForSelector('#detail-meta [data-field="id"]');
      assert.equal(await page.textContent('#detail-meta [data-field="id"] dd'), shown[1].id);
      await page.keyboard.press('ArrowRight');
      await page.waitForFunction((id) => document.querySelector('#detail-meta [data-field="id"] dd')?.textContent === id, shown[2].id);
      await page.keyboard.press('Escape');
      await page.waitForSelector('#detail:not([open])', { state: 'attached' });
      await page.waitForFunction((id) => document.activeElement.dataset.id === id, shown[2].id, { timeout: 2000 }).catch(() => {});
      assert.equal(await focusedId(), shown[2].id, 'focus is back on the card last viewed');
      await page.keyboard.press('/');
      assert.equal(await page.evaluate(() => document.activeElement.id), 'q', '/ jumps back to the search box');
      const outline = await page.locator('#results .card').first().evaluate((c) => { c.focus(); return getComputedStyle(c).outlineStyle; });
      assert.notEqual(outline, 'none', 'a focused card has a visible focus ring');
    });
  });
});

describe('directory ingest job', () => {
  test('a folder submitted in the form becomes a job with live progress that completes', T, async (t) => {
    if (!IMAGE_ROOT) return t.skip('VQ_IMAGE_ROOT is not set');
    const dirName = 'job-' + RUN_ID;
    writePhotos(path.join(IMAGE_ROOT, dirName, 'nested'), [20, 21], 'n-');
    writePhotos(path.join(IMAGE_ROOT, dirName), [22]);
    fs.writeFileSync(path.join(IMAGE_ROOT, dirName, 'broken.jpg'), 'not a jpeg at all');
    const before = await imageCount();
    await withPage(browser, 'job', async (page) => {
      // Record every state the job list shows, to see the live progress.
      await page.evaluate(() => {
        window.__jobStates = [];
        new MutationObserver(() => {
          for (const li of document.querySelectorAll('#jobs .job')) {
            const seen = li.dataset.state + ' ' + li.querySelector('.job-counts').textContent;
            if (window.__jobStates[window.__jobStates.length - 1] !== seen) window.__jobStates.push(seen);
          }
        }).observe(document.getElementById('jobs'), { subtree: true, childList: true, attributes: true, characterData: true });
      });
      await page.locator('#job-path').fill(dirName);
      assert.ok(await page.locator('#job-recursive').isChecked(), 'recursive by default');
      const posted = page.waitForResponse((r) => r.url() === BASE + '/ingest/directory');
      await page.locator('#job-submit').click();
      const res = await posted;
      assert.equal(res.status(), 202, 'POST /ingest/directory: ' + await res.text());
      const job = await res.json();
      const node = page.locator('#jobs .job[data-job-id="' + job.id + '"]');
      await node.waitFor();
      assert.ok(await page.locator('#job-error').isHidden());
      assert.equal(await page.locator('#jobs .job').first().getAttribute('data-job-id'), job.id, 'newest job first');
      await page.waitForFunction((id) => {
        const li = document.querySelector('#jobs .job[data-job-id="' + id + '"]');
        return li && !['queued', 'running', 'cancelling'].includes(li.dataset.state);
      }, job.id, { timeout: 60_000 });
      assert.equal(await node.getAttribute('data-state'), 'completed');
      const seen = await page.evaluate(() => window.__jobStates);
      assert.match(seen[0], /^(queued|running) /, 'the job shows up while it is still to do: ' + JSON.stringify(seen));
      const final = (await api('GET', '/jobs/' + job.id)).json;
      assert.equal(final.total, 4);
      assert.equal(final.indexed, 3);
      assert.equal(final.failed, 1);
      assert.match(await node.locator('.job-counts').textContent(), /^4 \/ 4\sdone · 100%$/);
      const breakdown = await node.locator('.job-breakdown').textContent();
      assert.match(breakdown, /3\sindexed/);
      assert.match(breakdown, /0\sskipped/);
      assert.match(breakdown, /1\sfailed/);
      assert.equal(await node.locator('.badge').textContent(), 'completed');
      assert.deepEqual(await node.locator('progress').evaluate((p) => [p.value, p.max]), [4, 4]);
      assert.ok(await node.getByRole('button', { name: /Cancel/ }).isHidden(), 'no cancel button once finished');
      // The failure reason is one click away.
      await node.locator('.job-failures summary').click();
      const failure = await node.locator('.job-failures li').first().textContent();
      assert.match(failure, /broken\.jpg/);
      assert.ok(failure.includes(final.failures[0].error.message || final.failures[0].error), 'shows the reason: ' + failure);
      assert.equal(await imageCount(), before + 3);
      await page.waitForFunction((n) => document.getElementById('status-images-count').textContent.replace(/\D/g, '') === String(n), before + 3, { timeout: 10_000 });
    });
  });
});

describe('cancel a job', () => {
  test('Cancel stops a running directory job', T, async (t) => {
    if (!IMAGE_ROOT) return t.skip('VQ_IMAGE_ROOT is not set');
    const dirName = 'big-' + RUN_ID;
    const numbers = Array.from({ length: 160 }, (_, i) => 40 + i);
    writePhotos(path.join(IMAGE_ROOT, dirName), numbers);
    await withPage(browser, 'job-cancel', async (page) => {
      await page.locator('#job-path').fill(dirName);
      const posted = page.waitForResponse((r) => r.url() === BASE + '/ingest/directory');
      await page.locator('#job-submit').click();
      const job = await (await posted).json();
      const node = page.locator('#jobs .job[data-job-id="' + job.id + '"]');
      await node.waitFor();
      const cancel = node.getByRole('button', { name: /Cancel/ });
      assert.ok(await cancel.isVisible(), 'a queued or running job can be cancelled');
      // Cancel once it runs (160 files take the tiny model several seconds).
      await page.waitForFunction((id) => {
        const li = document.querySelector('#jobs .job[data-job-id="' + id + '"]');
        return li && li.dataset.state !== 'queued' && /\/ [1-9]/.test(li.querySelector('.job-counts').textContent);
      }, job.id, { timeout: 30_000 });
      const cancelled = page.waitForResponse((r) => r.url() === BASE + '/jobs/' + job.id + '/cancel' && r.request().method() === 'POST');
      await cancel.click();
      assert.equal((await cancelled).status(), 200);
      await page.waitForFunction((id) => {
        const li = document.querySelector('#jobs .job[data-job-id="' + id + '"]');
        return li && !['queued', 'running', 'cancelling'].includes(li.dataset.state);
      }, job.id, { timeout: 60_000 });
      const final = (await api('GET', '/jobs/' + job.id)).json;
      assert.equal(final.state, 'cancelled', 'job ended ' + final.state + ' after ' + final.done + ' of ' + final.total);
      assert.ok(final.done < final.total, 'stopped early: ' + final.done + ' / ' + final.total);
      assert.equal(await node.getAttribute('data-state'), 'cancelled');
      assert.equal(await node.locator('.badge').textContent(), 'cancelled');
      assert.ok(await cancel.isHidden());
      assert.match(await node.locator('.job-counts').textContent(), new RegExp('^' + final.done + ' / ' + final.total + '\\sdone'));
    });
  });
});

describe('layout', () => {
  test('phone-sized screen: no horizontal scroll, two-column grid, usable detail view', T, async () => {
    await withPage(browser, 'phone', async (page) => {
      await typeQuery(page, QUERY);
      await shownResults(page);
      const m = await page.evaluate(() => ({
        scroll: document.documentElement.scrollWidth,
        client: document.documentElement.clientWidth,
        cols: getComputedStyle(document.getElementById('results')).gridTemplateColumns.split(' ').length,
      }));
      assert.ok(m.scroll <= m.client, 'no horizontal scroll: ' + m.scroll + ' > ' + m.client);
      assert.equal(m.cols, 2);
      await page.locator('#results .card').first().click();
      await page.waitForSelector('#detail[open]');
      const box = await page.locator('#detail').boundingBox();
      assert.ok(box.width <= PHONE.width && box.x >= 0, 'the detail view fits the screen');
      assert.ok(await page.locator('#detail-similar').isVisible());
      await page.keyboard.press('Escape');
      fs.mkdirSync(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: path.join(ARTIFACTS, 'phone.png') });
    }, { viewport: PHONE });
  });

  test('desktop screenshot with results → docs/screenshot.png', T, async () => {
    await withPage(browser, 'screenshot', async (page) => {
      await typeQuery(page, QUERY);
      await shownResults(page);
      await page.waitForFunction(() => Array.from(document.querySelectorAll('#results .thumb'))
        .every((t) => t.classList.contains('is-loaded') || t.classList.contains('is-missing')), null, { timeout: 20_000 });
      await page.locator('#q').blur();
      await page.mouse.move(0, 0);
      await page.waitForTimeout(300); // let fades finish
      fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
      await page.screenshot({ path: SCREENSHOT });
      assert.ok(fs.statSync(SCREENSHOT).size > 10_000);
    }, { viewport: DESKTOP });
  });
});

describe('delete', () => {
  test('"Delete from index" asks first, then removes the image from the index and the grid', T, async (t) => {
    if (!seeded.length) return t.skip('nothing seeded by this run to delete');
    const id = seeded[seeded.length - 1];
    const before = await imageCount();
    await withPage(browser, 'delete', async (page) => {
      // A deep link to "more like this" of the image: it is the first result.
      const shown = await shownResults(page);
      const self = shown.find((c) => c.id === id);
      assert.ok(self && self.score === shown[0].score, 'the image leads its own "more like this" (pixel twins may tie)');
      assert.ok(await page.locator('#similar-chip').isVisible());
      const card = page.locator('#results .card[data-id="' + id + '"]');
      await card.click();
      await page.waitForSelector('#detail[open]');
      await page.locator('#detail-delete').click();
      assert.ok(await page.locator('#detail-confirm').isVisible(), 'asks for confirmation');
      await page.locator('#detail-confirm-no').click();
      assert.ok(await page.locator('#detail-confirm').isHidden());
      assert.equal((await api('GET', '/images/' + id)).status, 200, 'Cancel deletes nothing');
      await page.locator('#detail-delete').click();
      const del = page.waitForResponse((r) => r.url() === BASE + '/images/' + id && r.request().method() === 'DELETE');
      await page.locator('#detail-confirm-yes').click();
      const res = await del;
      assert.equal(res.status(), 200, 'DELETE /images/{id}: ' + await res.text());
      await page.waitForSelector('#detail:not([open])', { state: 'attached' });
      await card.waitFor({ state: 'detached' });
      assert.equal((await api('GET', '/images/' + id)).status, 404);
      assert.equal(await imageCount(), before - 1);
    }, { path: '/?like=' + id });
  });

  test('a failed delete keeps the dialog open and shows why', T, async () => {
    await withPage(browser, 'delete-error', async (page) => {
      await typeQuery(page, QUERY);
      const shown = await shownResults(page);
      await page.route('**/images/*', (route) => route.request().method() === 'DELETE'
        ? route.fulfill({ status: 500, contentType: 'application/json', body: JSON.stringify({ error: { code: 'index_error', message: 'the index could not be written' } }) })
        : route.continue());
      await page.locator('#results .card').first().click();
      await page.locator('#detail-delete').click();
      await page.locator('#detail-confirm-yes').click();
      const alert = page.locator('#detail-error');
      await alert.waitFor();
      assert.equal((await alert.locator('.alert-message').textContent()).trim(), 'the index could not be written');
      assert.ok(await page.locator('#detail').evaluate((d) => d.open));
      assert.equal((await api('GET', '/images/' + shown[0].id)).status, 200);
    });
  });
});
