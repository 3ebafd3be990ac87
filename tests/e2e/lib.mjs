// Shared helpers of the end-to-end tests: the browser (Debian's Chromium through playwright-core,
// never a downloaded browser), the API client, and the test images.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { createRequire } from 'node:module';
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
  // The header the page sends: state changes without a key need it (see README, Access control).
  const init = { method, headers: { Accept: 'application/json', 'X-Requested-With': 'visionquery' }, signal: AbortSignal.timeout(30_000) };
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

// ------------------------------------------------------------------ accessibility (axe-core)

const require = createRequire(import.meta.url);
/** axe-core from node_modules, injected into the page under test (nothing is fetched at run time). */
const AXE_SCRIPT = require.resolve('axe-core');
/** The rule sets of WCAG 2.0 and 2.1, levels A and AA. */
export const AXE_TAGS = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'];
const BLOCKING = new Set(['serious', 'critical']);

/**
 * Runs axe-core on the page as it is now; returns the serious and critical violations, one entry
 * per rule with the elements (CSS selectors) that break it. Minor and moderate findings are not
 * returned: the tests fail on the ones that keep people from using the page.
 */
export async function axeViolations(page) {
  // Evaluated through the DevTools protocol: the page's Content-Security-Policy (no inline
  // script) would block a <script> tag, and the page is audited under its real policy.
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) await page.evaluate(fs.readFileSync(AXE_SCRIPT, 'utf8'));
  const violations = await page.evaluate(async (tags) => {
    const result = await window.axe.run(document, { runOnly: { type: 'tag', values: tags }, resultTypes: ['violations'] });
    return result.violations.map((v) => ({
      id: v.id,
      help: v.help,
      nodes: v.nodes.map((n) => {
        const data = (n.any[0] || n.all[0] || n.none[0] || {}).data;
        // For colour contrast, the measured pair makes the failure readable without a rerun.
        const detail = data && data.contrastRatio ? data.fgColor + ' on ' + data.bgColor + ' = ' + data.contrastRatio + ':1 (needs ' + data.expectedContrastRatio + ')' : '';
        return { impact: n.impact, target: n.target.join(' '), detail };
      }),
    }));
  }, AXE_TAGS);
  return violations
    .map((v) => ({ ...v, nodes: v.nodes.filter((n) => BLOCKING.has(n.impact)) }))
    .filter((v) => v.nodes.length > 0);
}

/** One line per rule and view with its count, then each failing element. */
export function formatViolations(found) {
  const elements = found.reduce((n, v) => n + v.nodes.length, 0);
  const lines = [elements + ' elements break serious or critical accessibility rules:'];
  for (const v of found) {
    lines.push('  ' + v.view + ': ' + v.id + ' (' + v.help + '), ' + v.nodes.length + ' elements');
    for (const n of v.nodes) lines.push('    [' + n.impact + '] ' + n.target + (n.detail ? '  ' + n.detail : ''));
  }
  return lines.join('\n');
}

/** Waits for the page's finite CSS animations and transitions (fades, dialog pop-in) to end. */
export async function settle(page) {
  await page.evaluate(() => Promise.all(document.getAnimations()
    .filter((a) => a.effect && a.effect.getTiming().iterations !== Infinity)
    .map((a) => a.finished.catch(() => {}))));
}
