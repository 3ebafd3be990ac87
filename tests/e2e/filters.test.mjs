// End-to-end tests of the filter bar, the order toggle, "more / less like this" and the duplicates
// view, in headless Debian Chromium. The photos carry real EXIF (tests/fixtures/exif/): a Canon
// from 2019, a FUJIFILM from 2021, a NIKON, one without a date and one without EXIF, in different
// folders and formats. As in ui.test.mjs, no test assumes what a text "means" to the random test
// model: each checks the request the page sends, and that the grid shows what the API answers to it.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import {
  launch, withPage, api, health, searchApi, formatScore, uniquePhoto, writePhotos, eventually,
  BASE, REPO, IMAGE_ROOT, RUN_ID, ARTIFACTS, PHONE,
} from './lib.mjs';

const T = { timeout: 120_000 };
const QUERY = 'a small picture';
const EXIF = path.join(REPO, 'tests', 'fixtures', 'exif');
const DIR = 'filters-' + RUN_ID;        // under the image root
const DUPS = 'dups-' + RUN_ID;
/** Where each fixture goes, relative to DIR. */
const LAYOUT = {
  '2019/full.jpg': 'full.jpg',
  '2019/png/full.png': 'full.png',
  '2021/no_offset.jpg': 'no_offset.jpg',
  'misc/south_west.jpg': 'south_west.jpg',
  'misc/no_exif.jpg': 'no_exif.jpg',
  'misc/padded_camera.jpg': 'padded_camera.jpg',
};

let browser;
let seeded = [];        // GET /images entries of DIR

async function ingestDir(dir) {
  const r = await api('POST', '/ingest/directory', { path: dir, recursive: true });
  assert.equal(r.status, 202, 'POST /ingest/directory: ' + r.text);
  const deadline = Date.now() + 60_000;
  for (;;) {
    const job = (await api('GET', '/jobs/' + r.json.id)).json;
    if (!['queued', 'running', 'cancelling'].includes(job.state)) {
      assert.equal(job.state, 'completed', 'ingest of ' + dir + ': ' + JSON.stringify(job));
      return job;
    }
    assert.ok(Date.now() < deadline, 'the ingest of ' + dir + ' did not finish in 60 s');
    await new Promise((res) => setTimeout(res, 250));
  }
}

async function listed(query) {
  const r = await api('GET', '/images?' + new URLSearchParams(query).toString());
  assert.equal(r.status, 200, 'GET /images: ' + r.text);
  return r.json;
}

before(async () => {
  const h = await health();
  assert.equal(h.model.state, 'ready', 'the server must be ready before the tests start');
  assert.ok(IMAGE_ROOT, 'these tests seed their own photos: run them through run.sh or set VQ_IMAGE_ROOT');
  for (const [to, from] of Object.entries(LAYOUT)) {
    const file = path.join(IMAGE_ROOT, DIR, to);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.copyFileSync(path.join(EXIF, from), file);
  }
  // Plain photos too, so that one page of 12 is not all: "More results" has a second page.
  writePhotos(path.join(IMAGE_ROOT, DIR, 'plain'), [80, 81, 82, 83, 84, 85, 86, 87]);
  await ingestDir(DIR);
  seeded = (await listed({ folder: DIR, limit: 100 })).images;
  assert.equal(seeded.length, Object.keys(LAYOUT).length + 8, 'every seeded photo is indexed: ' + seeded.map((i) => i.path).join(', '));
  browser = await launch();
});

after(async () => {
  if (browser) await browser.close();
});

const byName = (name) => seeded.filter((i) => path.basename(i.path) === name).map((i) => i.id);
const cameraOf = (c) => (c ? [c.make, c.model].filter(Boolean).join(' ') : '');

/** Waits for the grid to settle; returns what the cards show. */
async function shownCards(page) {
  await page.waitForFunction(() => document.getElementById('results').getAttribute('aria-busy') === 'false');
  return page.$$eval('#results .card', (cards) => cards.map((c) => ({
    id: c.dataset.id,
    score: c.querySelector('.score') ? c.querySelector('.score').textContent.trim() : null,
    takenAt: c.dataset.takenAt || null,
  })));
}

/**
 * Records every POST /search and GET /images the page sends; `next(fn)` waits for the next one
 * whose body (or query parameters) `fn` accepts, and for the grid to show its answer.
 */
function watchSearches(page) {
  const seen = [];
  page.on('request', (req) => {
    const url = new URL(req.url());
    if (url.pathname === '/search' && req.method() === 'POST') seen.push({ kind: 'search', body: req.postDataJSON() });
    else if (url.pathname === '/images' && req.method() === 'GET' && url.searchParams.get('limit') !== '1000') seen.push({ kind: 'list', params: Object.fromEntries(url.searchParams) });
  });
  return {
    seen,
    last: () => seen[seen.length - 1],
    /** Runs `action`, then waits for a request it caused that matches `fn` and its answer on screen. */
    async after(action, fn = () => true) {
      const from = seen.length;
      const res = page.waitForResponse((r) => {
        const u = new URL(r.url());
        return (u.pathname === '/search' || (u.pathname === '/images' && u.searchParams.get('limit') !== '1000'));
      });
      await action();
      const found = await eventually(() => seen.slice(from).filter((s) => fn(s)).pop(), { what: 'the search request', timeoutMs: 10_000 });
      await res;
      await page.waitForFunction(() => document.getElementById('results').getAttribute('aria-busy') === 'false');
      // The answer to the last request is what is shown.
      await eventually(async () => seen.length === from || seen[seen.length - 1] === found, { what: 'no newer request' });
      return found;
    },
  };
}

async function typeQuery(page, text) {
  await page.locator('#q').fill(text);
  await page.locator('#q').press('Enter');
}

async function setFolder(page, folder) {
  await page.locator('#f-folder').fill(folder);
  await page.locator('#f-folder').press('Enter');
}

/** The grid shows exactly the API's answer to `body`: ids, order and scores. */
async function expectGridIs(page, body) {
  const hits = await searchApi(body);
  const shown = await shownCards(page);
  assert.deepEqual(shown.map((c) => c.id), hits.map((h) => h.id), 'the grid shows POST /search ' + JSON.stringify(body));
  assert.deepEqual(shown.map((c) => c.score), hits.map((h) => formatScore(h.score)));
  return hits;
}

describe('filters', () => {
  test('the camera picker lists the cameras of the index; picking one narrows the grid', T, async () => {
    await withPage(browser, 'filter-camera', async (page) => {
      const w = watchSearches(page);
      await page.waitForSelector('#f-camera[data-loaded="true"]', { state: 'attached' });
      // Every camera of the index (paged through GET /images), once.
      const all = [];
      for (let offset = 0; ; offset += 1000) {
        const p = await listed({ limit: 1000, offset });
        all.push(...p.images);
        if (!p.more) break;
      }
      const expected = [...new Set(all.map((i) => cameraOf(i.camera)).filter(Boolean))].sort();
      const options = await page.$$eval('#f-camera option', (os) => os.map((o) => ({ value: o.value, label: o.textContent })));
      assert.equal(options[0].value, '', 'first option: any camera');
      assert.deepEqual(options.slice(1).map((o) => o.value).sort(), expected);
      const labels = options.map((o) => o.label);
      for (const want of ['Canon EOS 5D Mark IV', 'FUJIFILM X-T3', 'NIKON D750']) assert.ok(labels.includes(want), 'camera ' + want + ' in ' + labels.join(', '));

      await typeQuery(page, QUERY);
      let req = await w.after(() => setFolder(page, DIR), (s) => s.body && s.body.filters);
      assert.deepEqual(req.body, { query: QUERY, top_k: 24, filters: { folder: DIR } });
      const inFolder = await expectGridIs(page, req.body);
      assert.equal(inFolder.length, seeded.length, 'the folder filter keeps the seeded photos only');

      const canon = options.find((o) => o.label === 'Canon EOS 5D Mark IV').value;
      req = await w.after(() => page.locator('#f-camera').selectOption(canon), (s) => s.body && s.body.filters && s.body.filters.camera);
      assert.deepEqual(req.body.filters, { folder: DIR, camera: [canon] });
      const hits = await expectGridIs(page, req.body);
      assert.deepEqual(hits.map((h) => h.id).sort(), [...byName('full.jpg'), ...byName('full.png')].sort(), 'only the Canon photos');
      assert.ok(await page.locator('#f-clear').isVisible(), '"Clear filters" shows while a filter is set');

      // With no text, the filters alone list the images (GET /images).
      req = await w.after(() => page.locator('#q').fill(''), (s) => s.kind === 'list');
      assert.equal(req.params.camera, canon);
      assert.equal(req.params.folder, DIR);
      assert.equal(await page.textContent('#results-title'), 'Images');
      const shown = await shownCards(page);
      assert.deepEqual(shown.map((c) => c.id).sort(), [...byName('full.jpg'), ...byName('full.png')].sort());
      assert.ok(shown.every((c) => c.score === null), 'a listing has no scores');
    });
  });

  test('a date range narrows the grid; an impossible range shows the server\'s message', T, async () => {
    await withPage(browser, 'filter-dates', async (page) => {
      const w = watchSearches(page);
      await typeQuery(page, QUERY);
      await w.after(() => setFolder(page, DIR), (s) => s.body && s.body.filters);
      await page.locator('#f-after').fill('2019-01-01');
      const req = await w.after(() => page.locator('#f-before').fill('2019-12-31'), (s) => s.body && s.body.filters && s.body.filters.taken_before);
      assert.deepEqual(req.body.filters, { folder: DIR, taken_after: '2019-01-01', taken_before: '2019-12-31' });
      const hits = await expectGridIs(page, req.body);
      assert.deepEqual(hits.map((h) => h.id).sort(), [...byName('full.jpg'), ...byName('full.png')].sort(), 'only the photos of 2019');
      for (const h of hits) assert.match(h.taken_at, /^2019-07-14/);

      await page.locator('#f-after').fill('2021-06-01');
      const r2 = await w.after(() => page.locator('#f-before').fill('2022-01-31'), (s) => s.body && s.body.filters && s.body.filters.taken_before === '2022-01-31');
      assert.deepEqual((await expectGridIs(page, r2.body)).map((h) => h.id), byName('no_offset.jpg'), 'only the FUJIFILM of 2021-12-31');

      // "To" before "from": the server refuses and the page shows its message.
      await page.locator('#f-before').fill('2020-01-01');
      const alert = page.locator('#search-error');
      await alert.waitFor();
      assert.match(await alert.locator('.alert-message').textContent(), /filters\.taken_before: is before taken_after/);
      assert.match(await alert.locator('.alert-code').textContent(), /invalid_filter · 422/);
    });
  });

  test('folder and format filters', T, async () => {
    await withPage(browser, 'filter-folder-format', async (page) => {
      const w = watchSearches(page);
      await typeQuery(page, QUERY);
      let req = await w.after(() => setFolder(page, DIR + '/2019'), (s) => s.body && s.body.filters);
      let hits = await expectGridIs(page, req.body);
      assert.deepEqual(hits.map((h) => h.id).sort(), [...byName('full.jpg'), ...byName('full.png')].sort(), 'the folder and its sub-folders');

      req = await w.after(() => page.locator('label.check', { hasText: 'PNG' }).click(), (s) => s.body && s.body.filters && s.body.filters.format);
      assert.deepEqual(req.body.filters, { folder: DIR + '/2019', format: ['png'] });
      hits = await expectGridIs(page, req.body);
      assert.deepEqual(hits.map((h) => h.id), byName('full.png'));

      req = await w.after(() => page.locator('label.check', { hasText: 'JPEG' }).click(), (s) => s.body && s.body.filters && (s.body.filters.format || []).length === 2);
      assert.deepEqual(req.body.filters.format, ['jpeg', 'png']);
      assert.equal((await expectGridIs(page, req.body)).length, 2);

      // Clear filters: back to the whole index.
      req = await w.after(() => page.locator('#f-clear').click(), (s) => s.body && !s.body.filters);
      assert.deepEqual(req.body, { query: QUERY, top_k: 24 });
      assert.ok(await page.locator('#f-clear').isHidden());
    });
  });

  test('sort: newest and oldest order the cards by taken_at; "More results" loads the next page', T, async () => {
    await withPage(browser, 'sort', async (page) => {
      const w = watchSearches(page);
      await typeQuery(page, QUERY);
      await w.after(() => setFolder(page, DIR), (s) => s.body && s.body.filters);
      let req = await w.after(() => page.locator('label[for="sort-newest"]').click(), (s) => s.body && s.body.sort === '-taken_at');
      assert.deepEqual(req.body, { query: QUERY, top_k: 24, filters: { folder: DIR }, sort: '-taken_at' });
      await expectGridIs(page, req.body);
      let dated = (await shownCards(page)).map((c) => c.takenAt).filter(Boolean);
      assert.ok(dated.length >= 3, 'dated photos shown: ' + dated.join(', '));
      assert.deepEqual(dated, [...dated].sort().reverse(), 'newest first');
      assert.match(dated[0], /^2021-12-31/);

      req = await w.after(() => page.locator('label[for="sort-oldest"]').click(), (s) => s.body && s.body.sort === 'taken_at');
      await expectGridIs(page, req.body);
      dated = (await shownCards(page)).map((c) => c.takenAt).filter(Boolean);
      assert.deepEqual(dated, [...dated].sort(), 'oldest first');
      assert.match(dated[0], /^2019-07-14/);
      // Keyboard: arrows move through the order like any radio group.
      await page.locator('#sort-oldest').focus();
      req = await w.after(() => page.keyboard.press('ArrowRight'), (s) => s.body && s.body.sort === '-taken_at');
      assert.ok(await page.locator('#sort-newest').isChecked());

      // Paging: 12 per page, the next 12 appended with offset 12.
      req = await w.after(() => page.locator('#top-k').selectOption('12'), (s) => s.body && s.body.top_k === 12);
      assert.equal((await shownCards(page)).length, 12);
      assert.ok(await page.locator('#more-results').isVisible(), '"More results" shows while the server has more');
      req = await w.after(() => page.locator('#more-results').click(), (s) => s.body && s.body.offset === 12);
      assert.equal(req.body.top_k, 12);
      const all = await shownCards(page);
      assert.equal(all.length, seeded.length, 'both pages shown');
      const whole = await searchApi({ ...req.body, offset: 0, top_k: 100 });
      assert.deepEqual(all.map((c) => c.id), whole.map((h) => h.id), 'the two pages make the whole ordered list');
      assert.ok(await page.locator('#more-results').isHidden(), 'no more pages');
      assert.equal(await page.evaluate(() => document.activeElement.dataset.index), '12', 'focus moves on to the first card of the new page');

      // Without a text the same pages come from GET /images, with offset paging too.
      req = await w.after(() => page.locator('#q').fill(''), (s) => s.kind === 'list');
      assert.deepEqual(req.params, { limit: '12', sort: '-taken_at', folder: DIR });
      assert.equal((await shownCards(page)).length, 12);
      req = await w.after(() => page.locator('#more-results').click(), (s) => s.kind === 'list' && s.params.offset === '12');
      const listedAll = await shownCards(page);
      const whole2 = await listed({ folder: DIR, sort: '-taken_at', limit: 100 });
      assert.deepEqual(listedAll.map((c) => c.id), whole2.images.map((i) => i.id), 'both pages of the listing, in order');
      assert.match(await page.textContent('#results-meta'), new RegExp('^' + seeded.length + ' images match · ' + seeded.length + ' shown'));
    });
  });
});

describe('filters and a photo search', () => {
  test('filters do not apply to a search with a photo, and the page says so', T, async () => {
    await withPage(browser, 'filters-photo', async (page) => {
      const photo = fs.readFileSync(path.join(EXIF, 'full.jpg'));
      const sent = [];
      page.on('request', (r) => { if (new URL(r.url()).pathname.startsWith('/search')) sent.push(r.url()); });
      await page.locator('#photo-input').setInputFiles({ name: 'query.jpg', mimeType: 'image/jpeg', buffer: photo });
      await page.waitForFunction(() => document.getElementById('results-title').textContent === 'Similar images' && document.querySelectorAll('#results .card').length > 0);
      assert.equal(sent.length, 1);
      await page.locator('label.check', { hasText: 'PNG' }).click();
      await page.waitForFunction(() => /filters and order do not apply to a search with a photo/.test(document.getElementById('results-meta').textContent));
      assert.equal(sent.length, 1, 'the photo is not sent again');
      assert.ok(await page.locator('#results .grid-item [data-term="less"]').count() === 0, 'no "Less" without a text or image query');
    });
  });
});

describe('filters on a phone', () => {
  test('the filter bar folds behind a button that counts what is set', T, async () => {
    await withPage(browser, 'filters-phone', async (page) => {
      const w = watchSearches(page);
      assert.ok(await page.locator('#filters').isHidden(), 'folded at first');
      const toggle = page.locator('#filters-toggle');
      assert.equal(await toggle.getAttribute('aria-expanded'), 'false');
      await toggle.click();
      assert.equal(await toggle.getAttribute('aria-expanded'), 'true');
      assert.ok(await page.locator('#filters').isVisible());
      assert.equal(await page.evaluate(() => document.activeElement.id), 'f-after', 'focus moves into the bar');
      await typeQuery(page, QUERY);
      const req = await w.after(() => setFolder(page, DIR + '/2021'), (s) => s.body && s.body.filters);
      assert.deepEqual((await expectGridIs(page, req.body)).map((h) => h.id), byName('no_offset.jpg'));
      assert.equal((await toggle.textContent()).trim(), 'Filters · 1');
      const m = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth }));
      assert.ok(m.scroll <= m.client, 'no horizontal scroll: ' + m.scroll + ' > ' + m.client);
      fs.mkdirSync(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: path.join(ARTIFACTS, 'filters-phone.png') });
      // The duplicates view keeps its threshold in sight.
      await page.locator('#view-dups').click();
      assert.ok(await page.locator('#dups-threshold').isVisible(), 'the threshold slider shows on a phone');
      assert.ok(await toggle.isHidden(), 'no filter button in the duplicates view');
    }, { viewport: PHONE });
  });
});

describe('more and less like this', () => {
  test('"More" and "Less" add the image to the query as chips and terms of the request; removing a chip drops it', T, async () => {
    await withPage(browser, 'more-less', async (page) => {
      const w = watchSearches(page);
      await typeQuery(page, QUERY);
      await w.after(() => setFolder(page, DIR), (s) => s.body && s.body.filters);
      const first = await page.locator('#results .grid-item').nth(0).getAttribute('data-id');
      const second = await page.locator('#results .grid-item').nth(1).getAttribute('data-id');

      let req = await w.after(() => page.locator('#results .grid-item').nth(0).locator('[data-term="more"]').click(), (s) => s.body && s.body.positive);
      assert.deepEqual(req.body, { query: QUERY, top_k: 24, positive: [{ image_id: first, weight: 1 }], filters: { folder: DIR } });
      await expectGridIs(page, req.body);
      assert.equal(await page.locator('#query-terms .term-pos').getAttribute('data-id'), first);
      assert.match(await page.locator('#query-terms .term-pos').textContent(), /More like/);
      const moreBtn = page.locator('#results .grid-item[data-id="' + first + '"] [data-term="more"]');
      assert.equal(await moreBtn.getAttribute('aria-pressed'), 'true', 'the card shows it is in the query');
      assert.equal(await page.evaluate(() => document.activeElement.dataset.term + ' ' + document.activeElement.closest('.grid-item').dataset.id), 'more ' + first,
        'focus stays on the button, though the grid was drawn anew');

      // "Less" on the card of the second image; the grid may have re-ordered, so find it by id.
      req = await w.after(() => page.locator('#results .grid-item[data-id="' + second + '"] [data-term="less"]').click(), (s) => s.body && s.body.negative);
      assert.deepEqual(req.body.positive, [{ image_id: first, weight: 1 }]);
      assert.deepEqual(req.body.negative, [{ image_id: second, weight: 1 }]);
      await expectGridIs(page, req.body);
      assert.equal(await page.locator('#query-terms .chip').count(), 2);
      assert.equal(await page.locator('#query-terms .term-neg').getAttribute('data-id'), second);

      // From the details dialog: "Less like this" on the first moves it from positive to negative.
      await page.locator('#results .card[data-id="' + first + '"]').click();
      await page.waitForSelector('#detail[open]');
      await page.waitForSelector('#detail-meta [data-field="id"]');
      req = await w.after(() => page.locator('#detail-less').click(), (s) => s.body && (s.body.negative || []).length === 2);
      assert.equal(req.body.positive, undefined);
      assert.deepEqual(req.body.negative.map((t) => t.image_id), [second, first]);
      await page.waitForSelector('#detail:not([open])', { state: 'attached' });

      // Pressing a pressed "Less" again (keyboard) drops the term.
      await page.locator('#results .grid-item[data-id="' + second + '"] [data-term="less"]').focus();
      req = await w.after(() => page.keyboard.press('Enter'), (s) => s.body && (s.body.negative || []).length === 1);
      assert.deepEqual(req.body.negative, [{ image_id: first, weight: 1 }]);
      assert.equal(await page.locator('#results .grid-item[data-id="' + second + '"] [data-term="less"]').getAttribute('aria-pressed'), 'false');
      req = await w.after(() => page.keyboard.press('Enter'), (s) => s.body && (s.body.negative || []).length === 2);
      assert.deepEqual(req.body.negative.map((t) => t.image_id), [first, second]);

      // Removing a chip (keyboard) drops its term.
      await page.locator('#query-terms .term-neg[data-id="' + second + '"] .chip-close').focus();
      req = await w.after(() => page.keyboard.press('Enter'), (s) => s.body && (s.body.negative || []).length === 1);
      assert.deepEqual(req.body.negative, [{ image_id: first, weight: 1 }]);
      await expectGridIs(page, req.body);
      assert.equal(await page.locator('#query-terms .chip').count(), 1);
      assert.equal(await page.evaluate(() => document.activeElement.className), 'chip-close', 'focus stays on the chips');
      await page.locator('label[for="sort-newest"]').click();
      await page.waitForFunction(() => document.getElementById('results').getAttribute('aria-busy') === 'false');
      await page.mouse.move(0, 0);
      fs.mkdirSync(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: path.join(ARTIFACTS, 'filters.png') });
    });
  });

  test('the address keeps the text, the terms, the filters and the order; a reload restores them', T, async () => {
    await withPage(browser, 'url-state', async (page) => {
      const w = watchSearches(page);
      await typeQuery(page, QUERY);
      await w.after(() => setFolder(page, DIR), (s) => s.body && s.body.filters);
      await w.after(() => page.locator('label.check', { hasText: 'JPEG' }).click(), (s) => s.body && s.body.filters && s.body.filters.format);
      await w.after(() => page.locator('label[for="sort-oldest"]').click(), (s) => s.body && s.body.sort);
      const [a, b] = await page.$$eval('#results .grid-item', (items) => items.slice(0, 2).map((i) => i.dataset.id));
      await w.after(() => page.locator('#results .grid-item[data-id="' + a + '"] [data-term="more"]').click(), (s) => s.body && s.body.positive);
      const before = await w.after(() => page.locator('#results .grid-item[data-id="' + b + '"] [data-term="less"]').click(), (s) => s.body && s.body.negative);
      const params = Object.fromEntries(new URL(page.url()).searchParams);
      assert.deepEqual(params, { q: QUERY, more: a, less: b, folder: DIR, format: 'jpeg', sort: 'taken_at' });

      const again = page.waitForRequest((r) => new URL(r.url()).pathname === '/search');
      await page.reload({ waitUntil: 'domcontentloaded' });
      assert.deepEqual((await again).postDataJSON(), before.body, 'the same search after a reload');
      assert.equal(await page.locator('#q').inputValue(), QUERY);
      assert.equal(await page.locator('#f-folder').inputValue(), DIR);
      assert.ok(await page.locator('label.check', { hasText: 'JPEG' }).locator('input').isChecked());
      assert.ok(await page.locator('#sort-oldest').isChecked());
      const nameOf = (id) => path.basename(seeded.find((i) => i.id === id).path);
      await page.waitForFunction((name) => document.querySelector('#query-terms .term-pos strong')?.textContent === name, nameOf(a));
      assert.equal(await page.locator('#query-terms .term-neg strong').textContent(), nameOf(b));
    });
  });

  test('the details dialog shows when and with what camera a photo was taken', T, async () => {
    await withPage(browser, 'detail-exif', async (page) => {
      const w = watchSearches(page);
      await typeQuery(page, QUERY);
      await w.after(() => setFolder(page, DIR + '/2019'), (s) => s.body && s.body.filters);
      const [id] = byName('full.jpg');
      await page.locator('#results .card[data-id="' + id + '"]').click();
      await page.waitForSelector('#detail-meta [data-field="taken"]');
      const meta = await page.$$eval('#detail-meta .meta-row', (rows) => Object.fromEntries(rows.map((r) => [r.dataset.field, r.querySelector('dd').textContent])));
      assert.equal(meta.taken, '2019-07-14 12:30:05 +02:00');
      assert.equal(meta.camera, 'Canon EOS 5D Mark IV');
      assert.equal(meta.lens, 'EF24-70mm f/2.8L II USM');
      assert.equal(meta.location, '48.8566, 2.3522');
      assert.match(await page.locator('#results .card[data-id="' + id + '"] .card-info').textContent(), /2019-07-14 · Canon EOS 5D Mark IV/);
    });
  });
});

describe('duplicates', () => {
  test('the duplicates view lists an identical group (one photo at two paths) and a similar group', T, async (t) => {
    const probe = await api('GET', '/duplicates?threshold=0.95');
    if (probe.status === 404 || probe.status === 405) return t.skip('this server has no GET /duplicates');
    // The same bytes at two paths, ingested one after the other; the same picture as a
    // progressive JPEG and a PNG (other pixels, the same look).
    const twin = uniquePhoto(90, 'dups');
    const fixture = (name) => path.join(REPO, 'tests', 'fixtures', 'images', name);
    fs.mkdirSync(path.join(IMAGE_ROOT, DUPS, 'a'), { recursive: true });
    fs.writeFileSync(path.join(IMAGE_ROOT, DUPS, 'a', 'twin.jpg'), twin.bytes);
    fs.copyFileSync(fixture('progressive.jpg'), path.join(IMAGE_ROOT, DUPS, 'look-alike.jpg'));
    fs.copyFileSync(fixture('rgb.png'), path.join(IMAGE_ROOT, DUPS, 'look-alike.png'));
    await ingestDir(DUPS);
    // A second job finds the copy. (Both copies in one job: the job skips the second without
    // remembering its path, so no identical group shows; a server issue, not the page's.)
    fs.mkdirSync(path.join(IMAGE_ROOT, DUPS, 'b'), { recursive: true });
    fs.writeFileSync(path.join(IMAGE_ROOT, DUPS, 'b', 'twin.jpg'), twin.bytes);
    await ingestDir(DUPS);

    await withPage(browser, 'duplicates', async (page) => {
      const dupsReq = page.waitForRequest((r) => new URL(r.url()).pathname === '/duplicates');
      await page.locator('#view-dups').click();
      assert.equal(new URL((await dupsReq).url()).searchParams.get('threshold'), '0.95');
      assert.equal(await page.locator('#view-dups').getAttribute('aria-pressed'), 'true');
      assert.ok(await page.locator('#filters').isHidden(), 'the search view is hidden');
      await page.waitForFunction(() => document.getElementById('dups-list').getAttribute('aria-busy') === 'false' && document.querySelectorAll('.dup-group').length > 0);
      const groups = await page.$$eval('.dup-group', (gs) => gs.map((g) => ({
        kind: g.dataset.kind,
        title: g.querySelector('.dup-title').textContent,
        paths: Array.from(g.querySelectorAll('.dup-card')).map((c) => c.dataset.path),
        thumbs: Array.from(g.querySelectorAll('.dup-card img')).map((i) => i.getAttribute('src')),
      })));
      const api95 = (await api('GET', '/duplicates?threshold=0.95')).json;
      assert.deepEqual(groups.map((g) => g.kind), api95.groups.map((g) => g.kind), 'the groups of GET /duplicates, in order');
      const identical = groups.find((g) => g.kind === 'identical' && g.paths.some((p) => p.endsWith(path.join(DUPS, 'a', 'twin.jpg'))));
      assert.ok(identical, 'an identical group with the twin: ' + JSON.stringify(groups));
      assert.ok(identical.paths.some((p) => p.endsWith(path.join(DUPS, 'b', 'twin.jpg'))), 'both paths of the twin');
      assert.match(identical.title, /Identical/);
      assert.ok(identical.thumbs.every((s) => /^\/images\/[^/]+\/thumbnail\?size=256$/.test(s)), 'thumbnails at 256 px');
      const similar = groups.find((g) => g.kind === 'similar' && g.paths.some((p) => p.endsWith(path.join(DUPS, 'look-alike.jpg'))));
      assert.ok(similar, 'a similar group with the look-alikes: ' + JSON.stringify(groups));
      assert.ok(similar.paths.some((p) => p.endsWith(path.join(DUPS, 'look-alike.png'))), 'both look-alikes');
      assert.match(similar.title, /Similar/);
      assert.ok(similar.paths.length >= 2);

      // The threshold applies on change: 1.00 leaves no look-alikes that are not the same picture.
      const req = page.waitForRequest((r) => new URL(r.url()).pathname === '/duplicates' && new URL(r.url()).searchParams.get('threshold') === '0.99');
      await page.locator('#dups-threshold-num').fill('0.99');
      await page.locator('#dups-threshold-num').press('Enter');
      await req;
      await page.waitForFunction(() => document.getElementById('dups-list').getAttribute('aria-busy') === 'false');
      assert.equal(await page.locator('#dups-threshold').inputValue(), '0.99', 'the slider follows the number');

      // A threshold the server refuses: its message is shown.
      await page.locator('#dups-threshold-num').fill('0.2');
      await page.locator('#dups-threshold-num').press('Enter');
      const alert = page.locator('#dups-error');
      await alert.waitFor();
      const refused = await api('GET', '/duplicates?threshold=0.2');
      assert.equal(refused.status, 422);
      assert.equal((await alert.locator('.alert-message').textContent()).trim(), refused.json.error.message);
      await page.locator('#dups-threshold-num').fill('0.99');
      await page.locator('#dups-threshold-num').press('Enter');
      await alert.waitFor({ state: 'hidden' });

      // A card opens the details dialog.
      await page.locator('.dup-group[data-kind="identical"] .dup-card').first().click();
      await page.waitForSelector('#detail[open]');
      await page.keyboard.press('Escape');
      fs.mkdirSync(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: path.join(ARTIFACTS, 'duplicates.png'), fullPage: true });
    });
  });
});
