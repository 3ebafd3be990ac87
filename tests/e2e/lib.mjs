// Shared helpers of the end-to-end tests: the browser (Debian's Chromium through playwright-core,
// never a downloaded browser), the API client, and the test images.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, '..', '..');
export const ARTIFACTS = path.join(HERE, 'artifacts');
export const SCREENSHOT = path.join(REPO, 'docs', 'screenshot.png');

export const BASE = (process.env.VQ_URL || '').replace(/\/+$/, '');
if (!BASE) throw new Error('VQ_URL is not set: run the tests through tests/e2e/run.sh, or set VQ_URL to a running server');
/** The server's image root, when this process may write files into it (run.sh sets it). */
export const IMAGE_ROOT = process.env.VQ_IMAGE_ROOT || '';
export const CHROMIUM = process.env.VQ_CHROMIUM || '/usr/bin/chromium';
export const RUN_ID = crypto.randomBytes(4).toString('hex');

export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };

// ------------------------------------------------------------------ browser

export async function launch() {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vq-e2e-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: DESKTOP,
    colorScheme: 'light',
    timeout: 60_000,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  context.setDefaultTimeout(15_000);
  return {
    context,
    async close() {
      await context.close().catch(() => {});
      fs.rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

/**
 * Runs `fn` with a fresh page on the start page; on failure saves a screenshot of the page under
 * tests/e2e/artifacts/ before rethrowing. Records console errors and requests leaving the server.
 */
export async function withPage(browser, name, fn, { viewport = DESKTOP, path: start = '/' } = {}) {
  const page = await browser.context.newPage();
  await page.setViewportSize(viewport);
  const problems = { consoleErrors: [], foreignRequests: [] };
  page.on('console', (msg) => { if (msg.type() === 'error') problems.consoleErrors.push(msg.text()); });
  page.on('pageerror', (err) => problems.consoleErrors.push('pageerror: ' + err.message));
  page.on('request', (req) => {
    const url = req.url();
    if (!url.startsWith(BASE + '/') && !url.startsWith('data:') && !url.startsWith('blob:')) problems.foreignRequests.push(url);
  });
  try {
    await page.goto(BASE + start, { waitUntil: 'domcontentloaded' });
    await page.waitForSelector('html[data-ready="true"]');
    await fn(page, problems);
  } catch (err) {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    const file = path.join(ARTIFACTS, 'fail-' + name.replace(/[^a-z0-9]+/gi, '-').toLowerCase() + '.png');
    await page.screenshot({ path: file }).catch(() => {});
    err.message += '\n(screenshot: ' + path.relative(REPO, file) + ')';
    throw err;
  } finally {
    await page.close().catch(() => {});
  }
}

// ------------------------------------------------------------------ API

export async function api(method, urlPath, body, { raw = false } = {}) {
  const init = { method, headers: { Accept: 'application/json' }, signal: AbortSignal.timeout(30_000) };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(BASE + urlPath, init);
  if (raw) return res;
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { /* not JSON */ }
  return { status: res.status, headers: res.headers, json, text };
}

export async function health() {
  const r = await api('GET', '/health');
  if (r.status !== 200) throw new Error('/health answered ' + r.status + ': ' + r.text);
  return r.json;
}

export async function imageCount() {
  return (await health()).index.images;
}

export async function searchApi(body) {
  const r = await api('POST', '/search', body);
  if (r.status !== 200) throw new Error('POST /search ' + JSON.stringify(body) + ' answered ' + r.status + ': ' + r.text);
  return r.json.results;
}

export const formatScore = (s) => Number(s).toFixed(3);

// ------------------------------------------------------------------ test images

function photoDir() {
  const candidates = [
    process.env.VQ_PHOTOS,
    path.join(REPO, '..', 'shared', 'data', 'photos', 'images'),
    '/work/shared/data/photos/images',
  ].filter(Boolean);
  for (const dir of candidates) {
    try {
      const files = fs.readdirSync(dir).filter((f) => /\.jpe?g$/i.test(f)).sort();
      if (files.length >= 12) return { dir, files };
    } catch (_) { /* try the next */ }
  }
  // Fallback: the JPEG fixtures that ship with the repo.
  const dir = path.join(REPO, 'tests', 'fixtures', 'images');
  const files = fs.readdirSync(dir).filter((f) => /\.jpe?g$/i.test(f)).sort();
  return { dir, files };
}

const PHOTOS = photoDir();

/**
 * The `n`th test photo as JPEG bytes made unique to this run: a JPEG comment segment (COM) with
 * the run id goes right after the SOI marker, so the content hash is new while the pixels are
 * the same. That way a file is never "already indexed" from an earlier run against the same server.
 */
export function uniquePhoto(n, tag = '') {
  const name = PHOTOS.files[n % PHOTOS.files.length];
  const bytes = fs.readFileSync(path.join(PHOTOS.dir, name));
  if (bytes[0] !== 0xff || bytes[1] !== 0xd8) throw new Error(name + ' is not a JPEG');
  const comment = Buffer.from('visionquery-e2e ' + RUN_ID + ' ' + n + ' ' + tag);
  const seg = Buffer.alloc(4);
  seg[0] = 0xff; seg[1] = 0xfe;
  seg.writeUInt16BE(comment.length + 2, 2);
  return { name, bytes: Buffer.concat([bytes.subarray(0, 2), seg, comment, bytes.subarray(2)]) };
}

/** Writes the photos with the given numbers into `dir` (made if needed); returns their paths. */
export function writePhotos(dir, numbers, prefix = '') {
  fs.mkdirSync(dir, { recursive: true });
  return numbers.map((n) => {
    const { name, bytes } = uniquePhoto(n);
    const file = path.join(dir, prefix + name);
    fs.writeFileSync(file, bytes);
    return file;
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns a truthy value or `timeoutMs` passes. */
export async function eventually(fn, { timeoutMs = 15_000, intervalMs = 200, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error('timed out waiting for ' + what + (last instanceof Error ? ': ' + last.message : ''));
    await sleep(intervalMs);
  }
}
