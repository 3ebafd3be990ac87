// The page against a server that needs an API key: it asks for the key when the server answers
// 401, asks again for a wrong one, keeps it in sessionStorage, sends it as a header on every call
// and shows images from blob: URLs, so the key never appears in a URL.
// Needs VQ_KEYED_URL and VQ_KEYED_KEY (run.sh starts such a server when it starts its own).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';

import fs from 'node:fs';

import { launch, writePhotos, IMAGE_ROOT, RUN_ID, ARTIFACTS } from './lib.mjs';

const KEYED = (process.env.VQ_KEYED_URL || '').replace(/\/+$/, '');
const KEY = process.env.VQ_KEYED_KEY || '';
const T = { timeout: 90_000 };

let browser;

async function keyed(method, urlPath, body) {
  const headers = { Authorization: 'Bearer ' + KEY, Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(KEYED + urlPath, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: r.status, json: await r.json().catch(() => null) };
}

describe('API key prompt', { skip: !(KEYED && KEY && IMAGE_ROOT) && 'VQ_KEYED_URL, VQ_KEYED_KEY and VQ_IMAGE_ROOT are not set' }, () => {
  before(async () => {
    const files = writePhotos(path.join(IMAGE_ROOT, 'keyed-' + RUN_ID), [0, 1, 2]);
    for (const file of files) {
      const r = await keyed('POST', '/ingest/image', { path: file });
      assert.equal(r.status, 200, 'ingest with the key: ' + JSON.stringify(r.json));
    }
    assert.equal((await fetch(KEYED + '/images')).status, 401, 'the server needs a key');
    browser = await launch();
  });
  after(async () => { if (browser) await browser.close(); });

  test('asks for the key, refuses a wrong one, then sends it as a header and never in a URL', T, async () => {
    const page = await browser.context.newPage();
    const urls = [];
    const protectedWithoutKey = [];
    page.on('request', (req) => {
      urls.push(req.url());
      const p = new URL(req.url()).pathname;
      const isApi = /^\/(images|jobs|search|duplicates|ingest)/.test(p);
      if (isApi && req.url().startsWith(KEYED) && req.headers().authorization !== 'Bearer ' + KEY) protectedWithoutKey.push(req.method() + ' ' + p);
    });
    try {
      await page.goto(KEYED + '/', { waitUntil: 'domcontentloaded' });
      const dialog = page.locator('#key-dialog');
      await dialog.waitFor({ state: 'visible' });

      await page.locator('#key-input').fill('not-the-key-at-all');
      await page.locator('#key-submit').click();
      await page.waitForFunction(() => /not accepted/.test(document.getElementById('key-reason').textContent));
      assert.ok(await dialog.isVisible(), 'asked again after a wrong key');

      await page.locator('#key-input').fill(KEY);
      await page.locator('#key-submit').click();
      await dialog.waitFor({ state: 'hidden' });
      const beforeKey = protectedWithoutKey.splice(0);
      assert.ok(beforeKey.length > 0, 'the page called the API before it had a key');
      assert.equal(await page.evaluate(() => sessionStorage.getItem('visionquery.apiKey')), KEY, 'kept for the tab');
      assert.equal(await page.evaluate(() => localStorage.length), 0, 'nothing in localStorage');

      await page.locator('#q').fill('a photo');
      await page.waitForFunction(() => {
        const thumbs = document.querySelectorAll('#results .card .thumb');
        return thumbs.length > 0 && Array.from(thumbs).every((t) => t.classList.contains('is-loaded'));
      });
      const srcs = await page.$$eval('#results .card img', (imgs) => imgs.map((i) => i.getAttribute('src')));
      assert.ok(srcs.length > 0 && srcs.every((s) => s && s.startsWith('blob:')), 'thumbnails come from blob: URLs: ' + srcs.join(' '));

      // Since the key was entered, every API call carried it (the first ones got 401 and were retried).
      assert.deepEqual(protectedWithoutKey, [], 'API calls without the key');
      assert.ok(urls.every((u) => !u.includes(KEY) && !u.includes(encodeURIComponent(KEY))), 'the key never appears in a URL');
    } catch (err) {
      fs.mkdirSync(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: path.join(ARTIFACTS, 'fail-key-prompt.png') }).catch(() => {});
      throw err;
    } finally {
      await page.close().catch(() => {});
    }
  });
});
