// VisionQuery web page: plain JavaScript, no build step, no dependencies, nothing loaded from
// outside this server. Talks only to the JSON API served next to it.
(() => {
  'use strict';

  const SEARCH_DEBOUNCE_MS = 250;
  const HEALTH_POLL_MS = 5000;
  const HEALTH_POLL_FAST_MS = 1500;
  const JOBS_POLL_MS = 1000;
  const UPLOAD_CONCURRENCY = 2;
  const MAX_UPLOAD_ROWS = 60;

  const $ = (id) => document.getElementById(id);
  const el = {
    form: $('search-form'), q: $('q'), topK: $('top-k'), photoInput: $('photo-input'),
    results: $('results'), resultsTitle: $('results-title'), resultsMeta: $('results-meta'),
    searchError: $('search-error'), empty: $('empty'), emptyTitle: $('empty-title'), emptyText: $('empty-text'),
    chip: $('similar-chip'), chipImg: $('similar-chip-img'), chipName: $('similar-chip-name'), chipClear: $('similar-clear'),
    statusModel: $('status-model'), statusModelText: $('status-model-text'), statusModelDetail: $('status-model-detail'),
    statusImages: $('status-images-count'), statusImagesLabel: $('status-images-label'), statusVersion: $('status-version'),
    dialog: $('detail'), detailImg: $('detail-img'), detailTitle: $('detail-title'), detailScore: $('detail-score'),
    detailMeta: $('detail-meta'), detailError: $('detail-error'), detailClose: $('detail-close'),
    detailSimilar: $('detail-similar'), detailOpen: $('detail-open'), detailDelete: $('detail-delete'),
    detailConfirm: $('detail-confirm'), detailConfirmYes: $('detail-confirm-yes'), detailConfirmNo: $('detail-confirm-no'),
    detailPrev: $('detail-prev'), detailNext: $('detail-next'),
    dropzone: $('dropzone'), fileInput: $('file-input'), uploads: $('uploads'),
    jobForm: $('job-form'), jobPath: $('job-path'), jobRecursive: $('job-recursive'), jobSubmit: $('job-submit'),
    jobError: $('job-error'), jobs: $('jobs'), jobsEmpty: $('jobs-empty'),
    toasts: $('toasts'),
    filters: $('filters'), fAfter: $('f-after'), fBefore: $('f-before'), fCamera: $('f-camera'), fFolder: $('f-folder'),
    fClear: $('f-clear'), filtersToggle: $('filters-toggle'), terms: $('query-terms'), more: $('more-results'), detailLess: $('detail-less'),
    viewSearch: $('view-search'), viewDups: $('view-dups'), searchView: $('search-view'), dupsView: $('dups-view'),
    dupsThreshold: $('dups-threshold'), dupsThresholdNum: $('dups-threshold-num'), dupsList: $('dups-list'),
    dupsMeta: $('dups-meta'), dupsError: $('dups-error'), dupsForm: $('dups-form'),
  };

  const state = {
    mode: 'idle',          // 'idle' | 'text' | 'image' (an indexed image) | 'photo' (an uploaded one) | 'browse' (filters only)
    photo: null,           // the File of a 'photo' search
    photoUrl: null,
    query: '',
    imageId: null,
    imageName: '',
    results: [],
    positive: [],          // "more like this" images added to the query: {id, name}
    negative: [],          // "less like this" images
    more: false,           // the server has another page of these results
    seq: 0,
    controller: null,
    debounce: null,
    pendingRetry: false,   // a search failed because the model was loading: re-run when ready
    health: null,
    healthTimer: null,
    detailIndex: -1,
    detailId: null,
    detailReturnFocus: null,
    jobsTimer: null,
    jobStates: new Map(),
    jobsAvailable: true,
    view: 'search',        // 'search' | 'dups'
    dupsSeq: 0,
    dupsDebounce: null,
    filterDebounce: null,
    refocus: null,         // {id, term}: the card button to focus once the grid is drawn again
  };

  // ---------------------------------------------------------------- helpers

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  /** Turns a response body into an ApiError, whatever shape it has. */
  function errorFrom(status, statusText, text) {
    let code = 'http_' + status;
    let message = statusText || ('HTTP ' + status);
    if (text) {
      try {
        const body = JSON.parse(text);
        if (body && body.error) {
          code = body.error.code || code;
          message = body.error.message || message;
        }
      } catch (_) {
        message = text.trim().slice(0, 300) || message;
      }
    }
    return new ApiError(status, code, message);
  }

  // ---------------------------------------------------------------- API keys
  // With keys configured the server answers 401; the page then asks for a key, keeps it for this
  // browser tab only (sessionStorage) and sends it as a header on every call. Keys never go into
  // URLs (they would end up in logs and history): images are fetched with the header and shown
  // from blob: URLs.

  const KEY_STORAGE = 'visionquery.apiKey';
  let keyPrompt = null;  // the pending prompt, shared by every call that got a 401

  function apiKey() {
    try { return sessionStorage.getItem(KEY_STORAGE) || ''; } catch (_) { return ''; }
  }

  function setApiKey(key) {
    try {
      if (key) sessionStorage.setItem(KEY_STORAGE, key); else sessionStorage.removeItem(KEY_STORAGE);
    } catch (_) { /* storage disabled: the key lasts until the page is left */ }
    memoryKey = key || '';
    // Images fetched with another key are released; they are fetched again with this one.
    for (const promise of imageUrls.values()) promise.then((u) => URL.revokeObjectURL(u), () => {});
    imageUrls.clear();
  }
  let memoryKey = '';

  function currentKey() { return apiKey() || memoryKey; }

  /** The headers every call sends: the key, and the header that marks same-page requests. */
  function authHeaders(headers = {}) {
    headers['X-Requested-With'] = 'visionquery';
    const key = currentKey();
    if (key) headers.Authorization = 'Bearer ' + key;
    return headers;
  }

  /** Asks for a key; resolves true when one was entered, false when the person cancelled. */
  function askForKey(rejected) {
    if (keyPrompt) return keyPrompt;
    const dialog = $('key-dialog');
    const input = $('key-input');
    setText($('key-reason'), rejected
      ? 'That key was not accepted. Enter another API key.'
      : 'This server needs an API key. Ask its administrator for one (visionquery keys add).');
    input.value = '';
    keyPrompt = new Promise((resolve) => {
      const done = (ok) => {
        $('key-form').removeEventListener('submit', onSubmit);
        $('key-cancel').removeEventListener('click', onCancel);
        dialog.removeEventListener('cancel', onCancel);
        if (dialog.open) dialog.close();
        keyPrompt = null;
        resolve(ok);
      };
      const onSubmit = (e) => {
        e.preventDefault();
        const key = input.value.trim();
        if (!key) { input.focus(); return; }
        setApiKey(key);
        done(true);
      };
      const onCancel = (e) => { if (e) e.preventDefault(); done(false); };
      $('key-form').addEventListener('submit', onSubmit);
      $('key-cancel').addEventListener('click', onCancel);
      dialog.addEventListener('cancel', onCancel);
      if (!dialog.open) dialog.showModal();
      input.focus();
    });
    return keyPrompt;
  }

  /** After a 401: forget a key the server refused and ask for one. True when there is a new key. */
  async function recoverFrom401() {
    const hadKey = Boolean(currentKey());
    if (hadKey) setApiKey('');
    return askForKey(hadKey);
  }

  // Image URLs fetched with the key, as blob: URLs (bounded; the oldest are released).
  const imageUrls = new Map();
  const MAX_IMAGE_URLS = 400;

  async function blobUrl(url) {
    let entry = imageUrls.get(url);
    if (!entry) {
      entry = fetch(url, { headers: authHeaders() }).then(async (r) => {
        if (!r.ok) throw new ApiError(r.status, 'http_' + r.status, 'image not available');
        return URL.createObjectURL(await r.blob());
      });
      imageUrls.set(url, entry);
      entry.catch(() => imageUrls.delete(url));
      while (imageUrls.size > MAX_IMAGE_URLS) {
        const [oldest, promise] = imageUrls.entries().next().value;
        imageUrls.delete(oldest);
        promise.then((u) => URL.revokeObjectURL(u), () => {});
      }
    }
    return entry;
  }

  /** Shows `url` in `img`: directly without a key, else through a blob: URL fetched with it. */
  function setImageSrc(img, url) {
    if (!currentKey()) {
      img.src = url;
      return;
    }
    img.removeAttribute('srcset');
    img.dataset.src = url;
    blobUrl(url).then((u) => { if (img.dataset.src === url) img.src = u; }, async (err) => {
      if (err && err.status === 401 && await recoverFrom401()) { setImageSrc(img, url); return; }
      img.dispatchEvent(new Event('error'));
    });
  }

  async function api(method, path, body, options = {}) {
    const init = { method, headers: authHeaders({ Accept: 'application/json' }), signal: options.signal };
    if (body instanceof FormData) {
      init.body = body;
    } else if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      if (err && err.name === 'AbortError') throw err;
      throw new ApiError(0, 'network_error', 'Could not reach the server. Is it running?');
    }
    const text = await response.text();
    if (response.status === 401 && await recoverFrom401()) return api(method, path, body, options);
    if (!response.ok) throw errorFrom(response.status, response.statusText, text);
    if (!text) return null;
    try {
      return JSON.parse(text);
    } catch (_) {
      throw new ApiError(response.status, 'bad_response', 'The server answered with something that is not JSON.');
    }
  }

  const enc = encodeURIComponent;
  const thumbUrl = (id, size) => '/images/' + enc(id) + '/thumbnail' + (size ? '?size=' + size : '');
  const fileUrl = (id) => '/images/' + enc(id) + '/file';
  // Browsers show neither HEIC/HEIF nor camera RAW: for those the detail view shows the largest
  // thumbnail (the "open" link still gives the original), as it does for any original the
  // browser fails to show.
  const NOT_SHOWN_BY_BROWSERS = /\.(heic|heif|hif|dng|cr2|cr3|nef|arw|raf|orf|rw2)$/i;
  const detailUrl = (id, path) => (path && NOT_SHOWN_BY_BROWSERS.test(path) ? thumbUrl(id, 1024) : fileUrl(id));

  function baseName(path) {
    const parts = String(path || '').split(/[\\/]/);
    return parts[parts.length - 1] || String(path || '');
  }

  function dirName(path) {
    const p = String(path || '');
    const i = Math.max(p.lastIndexOf('/'), p.lastIndexOf('\\'));
    return i > 0 ? p.slice(0, i) : '';
  }

  const formatScore = (score) => Number(score).toFixed(3);

  const numberFmt = new Intl.NumberFormat();
  function formatBytes(n) {
    if (n == null || isNaN(n)) return '–';
    const units = ['bytes', 'KB', 'MB', 'GB', 'TB'];
    let v = Number(n);
    let u = 0;
    while (v >= 1024 && u < units.length - 1) { v /= 1024; u++; }
    return u === 0 ? numberFmt.format(v) + ' bytes' : v.toFixed(v < 10 ? 1 : 0) + ' ' + units[u];
  }

  function formatDuration(seconds) {
    if (seconds == null || !isFinite(seconds)) return '';
    let s = Math.max(0, Math.round(seconds));
    const h = Math.floor(s / 3600); s -= h * 3600;
    const m = Math.floor(s / 60); s -= m * 60;
    if (h) return h + 'h ' + String(m).padStart(2, '0') + 'm';
    if (m) return m + 'm ' + String(s).padStart(2, '0') + 's';
    return s + 's';
  }

  function formatTime(iso) {
    if (!iso) return '';
    const d = new Date(iso);
    return isNaN(d) ? String(iso) : d.toLocaleString();
  }

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  function make(tag, props, children) {
    const node = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (v == null || v === false) continue;
        if (k === 'class') node.className = v;
        else if (k === 'text') node.textContent = v;
        else if (k === 'dataset') { for (const [dk, dv] of Object.entries(v)) if (dv != null) node.dataset[dk] = dv; }
        else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
        else if (tag === 'img' && k === 'src') setImageSrc(node, v);
        else if (tag === 'img' && k === 'srcset' && currentKey()) continue;
        else node.setAttribute(k, v === true ? '' : v);
      }
    }
    for (const c of [].concat(children || [])) {
      if (c != null) node.append(c);
    }
    return node;
  }

  /** Shows an API error in an alert box: the server's own message, then its code. */
  function showError(box, err, hint) {
    box.replaceChildren();
    const msg = make('span', { class: 'alert-message', text: err.message || String(err) });
    box.append(msg);
    if (err.code) box.append(make('code', { class: 'alert-code', text: err.code + (err.status ? ' · ' + err.status : '') }));
    if (hint) box.append(make('span', { class: 'alert-hint', text: hint }));
    box.hidden = false;
  }

  function hideError(box) {
    box.hidden = true;
    box.replaceChildren();
  }

  function toast(message, kind = 'info') {
    const node = make('div', { class: 'toast toast-' + kind, text: message });
    el.toasts.append(node);
    setTimeout(() => node.classList.add('toast-out'), 3600);
    setTimeout(() => node.remove(), 4000);
  }

  function hintFor(err) {
    switch (err.code) {
      case 'model_loading': return 'The search will run again by itself once the model is ready.';
      case 'model_failed': return 'The server could not load its model; see the status bar.';
      case 'overloaded': return 'The server is busy; try again in a moment.';
      case 'network_error': return '';
      default: return '';
    }
  }

  // ---------------------------------------------------------------- status bar

  async function refreshHealth() {
    clearTimeout(state.healthTimer);
    let next = HEALTH_POLL_MS;
    try {
      const h = await api('GET', '/health');
      state.health = h;
      renderHealth(h);
      const ready = h.model && h.model.state === 'ready';
      if (!ready) next = HEALTH_POLL_FAST_MS;
      if (ready && state.pendingRetry) {
        state.pendingRetry = false;
        runSearch({ quiet: true });
      }
    } catch (err) {
      state.health = null;
      el.statusModel.dataset.state = 'offline';
      setText(el.statusModelText, 'Server unreachable');
      setText(el.statusModelDetail, err.message || '');
      next = HEALTH_POLL_FAST_MS;
    }
    state.healthTimer = setTimeout(refreshHealth, next);
  }

  function renderHealth(h) {
    const model = h.model || {};
    const st = model.state || 'unknown';
    el.statusModel.dataset.state = st;
    const label = st === 'ready' ? 'Model ready' : st === 'loading' ? 'Model loading…' : st === 'failed' ? 'Model failed to load' : 'Model ' + st;
    setText(el.statusModelText, label);
    const details = [];
    if (st === 'failed' && model.error) details.push(model.error);
    else {
      if (model.source) details.push(baseName(model.source));
      if (model.precision) details.push(model.precision);
      if (model.dim) details.push(model.dim + '-d');
    }
    setText(el.statusModelDetail, details.join(' · '));
    el.statusModelDetail.title = model.error || model.source || '';
    const n = h.index && typeof h.index.images === 'number' ? h.index.images : null;
    setText(el.statusImages, n == null ? '–' : numberFmt.format(n));
    setText(el.statusImagesLabel, n === 1 ? 'image indexed' : 'images indexed');
    setText(el.statusVersion, h.version ? 'v' + h.version : '');
    if (state.mode === 'idle') renderEmpty();
  }

  // ---------------------------------------------------------------- search

  function renderEmpty() {
    if (state.mode !== 'idle') return;
    const n = state.health && state.health.index ? state.health.index.images : null;
    el.empty.hidden = false;
    el.empty.dataset.kind = 'intro';
    if (n === 0) {
      setText(el.emptyTitle, 'Your index is empty');
      setText(el.emptyText, 'Upload images or ingest a folder of the server to get started.');
    } else {
      setText(el.emptyTitle, n ? 'Search ' + numberFmt.format(n) + (n === 1 ? ' image' : ' images') : 'Describe what you are looking for');
      setText(el.emptyText, 'Results appear as you type. Press / to jump to the search box, arrows to move across results, Enter to open one.');
    }
  }

  function clearSearch(opts = {}) {
    clearTimeout(state.debounce);
    if (state.controller) state.controller.abort();
    state.seq++;
    state.mode = 'idle';
    state.query = '';
    state.imageId = null;
    setPhoto(null);
    state.results = [];
    state.positive = [];
    state.negative = [];
    state.more = false;
    renderTerms();
    el.more.hidden = true;
    state.pendingRetry = false;
    el.results.replaceChildren();
    el.results.setAttribute('aria-busy', 'false');
    el.results.classList.remove('is-loading');
    el.chip.hidden = true;
    hideError(el.searchError);
    setText(el.resultsTitle, 'Search your images');
    setText(el.resultsMeta, '');
    updateUrl();
    renderEmpty();
    if (opts.browse !== false && browseWanted()) runSearch();
  }

  /** The address holds the whole search (text or image, terms, filters, order): reload and share it. */
  const URL_KEYS = ['q', 'like', 'more', 'less', 'after', 'before', 'camera', 'folder', 'format', 'sort'];
  function updateUrl() {
    const url = new URL(location.href);
    for (const key of URL_KEYS) url.searchParams.delete(key);
    const p = url.searchParams;
    if (state.mode === 'text' && state.query) p.set('q', state.query);
    if (state.mode === 'image' && state.imageId) p.set('like', state.imageId);
    if (state.mode === 'text' || state.mode === 'image') {
      if (state.positive.length) p.set('more', state.positive.map((t) => t.id).join(','));
      if (state.negative.length) p.set('less', state.negative.map((t) => t.id).join(','));
    }
    const f = currentFilters();
    if (f.taken_after) p.set('after', f.taken_after);
    if (f.taken_before) p.set('before', f.taken_before);
    if (f.camera) p.set('camera', f.camera[0]);
    if (f.folder) p.set('folder', f.folder);
    if (f.format) p.set('format', f.format.join(','));
    if (sortValue() !== 'relevance') p.set('sort', sortValue());
    if (url.href !== location.href) history.replaceState(null, '', url);
  }

  /** Sets the controls and terms from the address (see updateUrl); true when there is a search to run. */
  function restoreFromUrl() {
    const params = new URLSearchParams(location.search);
    el.fAfter.value = params.get('after') || '';
    el.fBefore.value = params.get('before') || '';
    const camera = params.get('camera');
    if (camera) {
      // The picker fills in later; until then the camera is an option of its own.
      el.fCamera.append(make('option', { value: camera, text: camera }));
      el.fCamera.value = camera;
    }
    el.fFolder.value = params.get('folder') || '';
    const formats = (params.get('format') || '').split(',').filter(Boolean);
    for (const c of el.filters.querySelectorAll('input[name="format"]')) c.checked = formats.includes(c.value);
    const sort = el.filters.querySelector('input[name="sort"][value="' + CSS.escape(params.get('sort') || 'relevance') + '"]');
    if (sort) sort.checked = true;
    el.fClear.hidden = !filtersActive();
    renderFiltersToggle();
    const ids = (key) => (params.get(key) || '').split(',').filter(Boolean).map((id) => ({ id, name: id }));
    const like = params.get('like');
    const q = params.get('q');
    if (like) {
      state.mode = 'image';
      state.imageId = like;
      state.imageName = like;
      showImageChip(like, like);
    } else if (q) {
      el.q.value = q;
    }
    if (like || q) {
      state.positive = ids('more');
      state.negative = ids('less');
      renderTerms();
      nameTerms(like);
    }
    return !!(like || q) || browseWanted();
  }

  /** Terms restored from the address know only their ids: fetch the file names to show. */
  async function nameTerms(mainId) {
    const wanted = [...state.positive, ...state.negative].map((t) => t.id).concat(mainId ? [mainId] : []);
    for (const id of new Set(wanted)) {
      try {
        const info = await api('GET', '/images/' + enc(id));
        const name = baseName(info.path);
        for (const t of [...state.positive, ...state.negative]) if (t.id === id) t.name = name;
        if (state.mode === 'image' && state.imageId === id) { state.imageName = name; setText(el.chipName, name); }
      } catch (_) { /* an image gone from the index keeps its id as its name */ }
    }
    renderTerms();
  }

  function scheduleSearch() {
    clearTimeout(state.debounce);
    state.debounce = setTimeout(() => runSearch(), SEARCH_DEBOUNCE_MS);
  }

  function onQueryInput() {
    const text = el.q.value;
    if (!text.trim()) {
      if (state.mode === 'text' && promoteTerm()) { scheduleSearch(); return; }
      if (state.mode !== 'image' && state.mode !== 'photo') clearSearch();
      else clearTimeout(state.debounce);
      return;
    }
    state.mode = 'text';
    state.imageId = null;
    setPhoto(null);
    el.chip.hidden = true;
    scheduleSearch();
  }

  function topK() {
    const n = parseInt(el.topK.value, 10);
    return Number.isFinite(n) ? n : 24;
  }

  async function runSearch(opts = {}) {
    clearTimeout(state.debounce);
    const append = !!opts.append;
    const offset = append ? state.results.length : 0;
    let body;
    let url = '/search';
    let method = 'POST';
    if (state.mode === 'image' && state.imageId) {
      body = combined({ image_id: state.imageId }, offset);
    } else if (state.mode === 'photo' && state.photo) {
      // POST /search/image takes no filters, terms or paging: a photo search is a plain one.
      url = '/search/image?top_k=' + topK();
      body = new FormData();
      body.append('file', state.photo, state.photo.name);
    } else if (el.q.value.trim()) {
      state.mode = 'text';
      state.query = el.q.value;
      body = combined({ query: state.query }, offset);
    } else if (browseWanted()) {
      state.mode = 'browse';
      method = 'GET';
      url = '/images?' + browseParams(offset).toString();
      body = undefined;
    } else {
      clearSearch({ browse: false });
      return;
    }
    updateUrl();
    if (state.controller) state.controller.abort();
    const controller = new AbortController();
    state.controller = controller;
    const seq = ++state.seq;
    el.results.setAttribute('aria-busy', 'true');
    el.results.classList.add('is-loading');
    if (!opts.quiet) setText(el.resultsMeta, 'Searching…');
    const started = performance.now();
    try {
      const res = await api(method, url, body, { signal: controller.signal });
      if (seq !== state.seq) return;
      state.pendingRetry = false;
      hideError(el.searchError);
      const page = res && Array.isArray(res.results) ? res.results : res && Array.isArray(res.images) ? res.images : [];
      state.results = append ? state.results.concat(page) : page;
      state.more = !!(res && res.more);
      const hadFocus = document.activeElement === el.more;
      renderResults(res, performance.now() - started, append ? offset : 0);
      // The last page hides "More results": the keyboard goes on at the first new card.
      if (append && hadFocus && el.more.hidden) {
        const next = cards()[offset];
        if (next) next.focus();
      }
    } catch (err) {
      if (err && err.name === 'AbortError') return;
      if (seq !== state.seq) return;
      if (append) { showError(el.searchError, err, hintFor(err)); return; }
      state.results = [];
      state.more = false;
      el.more.hidden = true;
      el.results.replaceChildren();
      el.empty.hidden = true;
      setText(el.resultsMeta, '');
      setText(el.resultsTitle, state.mode === 'text' ? 'Results' : state.mode === 'browse' ? 'Images' : 'Similar images');
      state.pendingRetry = err.code === 'model_loading' || err.code === 'model_unavailable';
      showError(el.searchError, err, hintFor(err));
    } finally {
      if (seq === state.seq) {
        el.results.setAttribute('aria-busy', 'false');
        el.results.classList.remove('is-loading');
        state.controller = null;
      }
    }
  }

  function renderResults(res, ms, from = 0) {
    const results = state.results;
    if (state.mode === 'image' || state.mode === 'photo') {
      setText(el.resultsTitle, 'Similar images');
    } else if (state.mode === 'browse') {
      setText(el.resultsTitle, 'Images');
    } else {
      setText(el.resultsTitle, 'Results for “' + state.query.trim() + '”');
    }
    let meta = results.length === 1 ? '1 result' : numberFmt.format(results.length) + ' results';
    if (state.mode === 'browse' && res && typeof res.total === 'number') {
      meta = numberFmt.format(res.total) + (res.total === 1 ? ' image matches' : ' images match') + ' · ' + numberFmt.format(results.length) + ' shown';
    }
    if (ms != null) meta += ' · ' + Math.max(1, Math.round(ms)) + ' ms';
    if (res && res.truncated) meta += ' · the query was longer than the model reads; only its start was used';
    if (state.mode === 'photo' && (filtersActive() || sortValue() !== 'relevance')) meta += ' · filters and order do not apply to a search with a photo';
    setText(el.resultsMeta, meta);

    const frag = document.createDocumentFragment();
    results.slice(from).forEach((r, i) => frag.append(cardFor(r, from + i)));
    if (from > 0) el.results.append(frag);
    else el.results.replaceChildren(frag);
    el.more.hidden = !state.more;
    if (state.refocus) {
      const { id, term } = state.refocus;
      state.refocus = null;
      const again = el.results.querySelector('.grid-item[data-id="' + CSS.escape(id) + '"] [data-term="' + term + '"]');
      (again || el.terms.querySelector('.chip-close') || el.q).focus();
    }

    if (results.length === 0) {
      el.empty.hidden = false;
      el.empty.dataset.kind = 'none';
      const n = state.health && state.health.index ? state.health.index.images : null;
      setText(el.emptyTitle, 'No results');
      setText(el.emptyText, n === 0 ? 'The index is empty: upload images or ingest a folder first.'
        : filtersActive() ? 'Nothing matched these filters. Loosen or clear them.' : 'Nothing matched. Try different words.');
    } else {
      el.empty.hidden = true;
    }
  }

  function cardFor(r, index) {
    const name = baseName(r.path);
    const hasScore = typeof r.score === 'number';
    const score = hasScore ? formatScore(r.score) : '';
    const img = make('img', {
      src: thumbUrl(r.id),
      srcset: thumbUrl(r.id) + ' 1x, ' + thumbUrl(r.id, 512) + ' 2x',
      alt: '',
      loading: index < 24 ? 'eager' : 'lazy',
      decoding: 'async',
      draggable: 'false',
    });
    // "Score" is for screen readers only; the badge itself shows just the number.
    const thumb = make('span', { class: 'thumb' }, hasScore ? [
      img,
      make('span', { class: 'visually-hidden', text: 'Score ' }),
      make('span', { class: 'score', title: 'Cosine similarity', text: score }),
    ] : [img]);
    img.addEventListener('load', () => thumb.classList.add('is-loaded'), { once: true });
    img.addEventListener('error', () => thumb.classList.add('is-missing'), { once: true });
    // No aria-label: the name is the visible text ("Score 0.245 beach.jpg /photos/2024"), so
    // people using speech input can say what they see (WCAG 2.5.3, label in name).
    const button = make('button', {
      type: 'button',
      class: 'card',
      title: r.path,
      dataset: { id: r.id, index: String(index), score: hasScore ? String(r.score) : null, takenAt: r.taken_at || null },
    }, [
      thumb,
      make('span', { class: 'card-body' }, [
        make('span', { class: 'card-name', text: name }),
        // LRM marks keep the slashes in place in the right-to-left box that ellipsizes the start.
        make('span', { class: 'card-dir', text: '\u200E' + dirName(r.path) + '\u200E' }),
        r.taken_at || r.camera ? make('span', { class: 'card-info', text: [formatTaken(r.taken_at, true), cameraLabel(r.camera)].filter(Boolean).join(' · ') }) : null,
      ]),
    ]);
    // The name in each label lets a screen reader tell the buttons of one card from the next
    // one's; it starts with the visible word, so speech input can use what it sees.
    // While the image is a term of the query its button is pressed; pressing it again drops the term.
    const combining = canCombine();
    const isPos = combining && state.positive.some((t) => t.id === r.id);
    const isNeg = combining && state.negative.some((t) => t.id === r.id);
    const actions = make('span', { class: 'card-actions' }, [
      make('button', {
        type: 'button', class: 'term-btn', 'data-term': 'more', 'aria-label': 'More like ' + name, title: 'More like this',
        'aria-pressed': combining ? String(isPos) : null,
      }, [make('span', { 'aria-hidden': 'true', class: 'term-sign', text: '+' }), 'More']),
      combining ? make('button', {
        type: 'button', class: 'term-btn', 'data-term': 'less', 'aria-label': 'Less like ' + name, title: 'Less like this',
        'aria-pressed': String(isNeg),
      }, [make('span', { 'aria-hidden': 'true', class: 'term-sign', text: '−' }), 'Less']) : null,
    ]);
    return make('li', { class: 'grid-item', dataset: { id: r.id } }, [button, actions]);
  }

  function cards() {
    return Array.from(el.results.querySelectorAll('.card'));
  }

  function gridColumns() {
    const cols = getComputedStyle(el.results).gridTemplateColumns;
    const n = cols && cols !== 'none' ? cols.split(' ').filter(Boolean).length : 1;
    return Math.max(1, n);
  }

  function onGridKey(e) {
    const card = e.target.closest('.card');
    if (!card) return;
    const all = cards();
    const i = all.indexOf(card);
    const cols = gridColumns();
    let next = null;
    switch (e.key) {
      case 'ArrowRight': next = i + 1; break;
      case 'ArrowLeft': next = i - 1; break;
      case 'ArrowDown': next = i + cols; break;
      case 'ArrowUp':
        if (i - cols < 0) { e.preventDefault(); el.q.focus(); return; }
        next = i - cols; break;
      case 'Home': next = 0; break;
      case 'End': next = all.length - 1; break;
      default: return;
    }
    e.preventDefault();
    next = Math.max(0, Math.min(all.length - 1, next));
    all[next].focus();
  }

  function onGridClick(e) {
    const termBtn = e.target.closest('.term-btn');
    if (termBtn) {
      const item = termBtn.closest('.grid-item');
      const r = state.results.find((x) => x.id === item.dataset.id);
      const name = r ? baseName(r.path) : item.dataset.id;
      const list = termBtn.dataset.term === 'more' ? 'positive' : 'negative';
      // The grid is drawn anew by the search: keep the keyboard on this button.
      state.refocus = { id: item.dataset.id, term: termBtn.dataset.term };
      if (termBtn.getAttribute('aria-pressed') === 'true') removeTerm(list, item.dataset.id, { keepFocus: true });
      else addTerm(list, item.dataset.id, name);
      return;
    }
    const card = e.target.closest('.card');
    if (!card) return;
    openDetail(Number(card.dataset.index), card);
  }

  // ---------------------------------------------------------------- detail dialog

  function openDetail(index, returnFocus) {
    const r = state.results[index];
    if (!r) return;
    state.detailIndex = index;
    showDetail(r.id, r, returnFocus);
  }

  function openDetailById(id, returnFocus) {
    const index = state.results.findIndex((r) => r.id === id);
    state.detailIndex = index;
    showDetail(id, index >= 0 ? state.results[index] : null, returnFocus);
  }

  async function showDetail(id, hit, returnFocus) {
    state.detailId = id;
    if (returnFocus) state.detailReturnFocus = returnFocus;
    const name = hit ? baseName(hit.path) : id;
    setText(el.detailTitle, name);
    setText(el.detailScore, hit ? 'Score ' + formatScore(hit.score) : '');
    el.detailScore.hidden = !hit;
    el.detailImg.alt = name;
    delete el.detailImg.dataset.fallback;
    setImageSrc(el.detailImg, detailUrl(id, hit && hit.path));
    el.detailOpen.href = fileUrl(id);
    el.detailMeta.replaceChildren(make('div', { class: 'meta-loading', text: 'Loading details…' }));
    el.detailConfirm.hidden = true;
    el.detailDelete.hidden = false;
    el.detailDelete.disabled = false;
    hideError(el.detailError);
    el.detailLess.hidden = !canCombine();
    el.detailPrev.hidden = !(state.detailIndex > 0);
    el.detailNext.hidden = !(state.detailIndex >= 0 && state.detailIndex < state.results.length - 1);
    if (!el.dialog.open) {
      el.dialog.showModal();
      el.detailClose.focus();
    }
    try {
      const info = await api('GET', '/images/' + enc(id));
      if (state.detailId !== id) return;
      renderMeta(info);
      setText(el.detailTitle, baseName(info.path));
      el.detailImg.alt = baseName(info.path);
      if (!hit && NOT_SHOWN_BY_BROWSERS.test(info.path || '')) {
        el.detailImg.dataset.fallback = '1';
        setImageSrc(el.detailImg, thumbUrl(id, 1024));
      }
      if (info.file_url) {
        el.detailOpen.href = info.file_url;
      }
    } catch (err) {
      if (state.detailId !== id) return;
      el.detailMeta.replaceChildren();
      showError(el.detailError, err);
    }
  }

  function renderMeta(info) {
    const loc = info.location;
    const rows = [
      ['Path', info.path, 'mono'],
      ['Taken', formatTaken(info.taken_at), null, info.taken_at],
      ['Camera', cameraLabel(info.camera)],
      ['Lens', info.lens],
      ['Location', loc ? loc.lat.toFixed(4) + ', ' + loc.lon.toFixed(4) : null],
      ['Dimensions', info.width != null ? info.width + ' × ' + info.height + ' px' : '–'],
      ['Size', info.bytes != null ? formatBytes(info.bytes) + (info.bytes >= 1024 ? ' (' + numberFmt.format(info.bytes) + ' bytes)' : '') : '–'],
      ['Format', info.format ? String(info.format).toUpperCase() : '–'],
      ['Indexed', formatTime(info.ingested_at), null, info.ingested_at],
      ['ID', info.id, 'mono'],
      ['Content hash', info.content_hash, 'mono small'],
    ];
    const frag = document.createDocumentFragment();
    for (const [label, value, cls, title] of rows) {
      if (value == null || value === '') continue;
      frag.append(make('div', { class: 'meta-row', dataset: { field: label.toLowerCase().replace(/\s+/g, '-') } }, [
        make('dt', { text: label }),
        make('dd', { class: cls || null, title: title || null, text: String(value) }),
      ]));
    }
    el.detailMeta.replaceChildren(frag);
  }

  function closeDetail() {
    if (el.dialog.open) el.dialog.close();
  }

  function onDetailClosed() {
    state.detailId = null;
    el.detailImg.removeAttribute('src');
    const back = state.detailReturnFocus;
    state.detailReturnFocus = null;
    if (back && document.contains(back)) back.focus();
    else {
      const card = cards()[Math.max(0, state.detailIndex)];
      if (card) card.focus();
    }
  }

  function stepDetail(delta) {
    const i = state.detailIndex + delta;
    if (state.detailIndex < 0 || i < 0 || i >= state.results.length) return;
    const card = cards()[i];
    state.detailReturnFocus = card || state.detailReturnFocus;
    openDetail(i);
  }

  function likeFromDetail(list) {
    const id = state.detailId;
    if (!id) return;
    const hit = state.results.find((r) => r.id === id);
    const name = el.detailTitle.textContent || (hit ? baseName(hit.path) : id);
    state.detailReturnFocus = el.q;
    closeDetail();
    addTerm(list, id, name);
  }

  // ---------------------------------------------------------------- combined query

  /** A search with a text or an indexed image can take more terms; a photo search or a listing cannot. */
  function canCombine() {
    return (state.mode === 'text' && !!el.q.value.trim()) || (state.mode === 'image' && !!state.imageId);
  }

  /**
   * "More like this" / "less like this": with a text or image search, the image joins the query
   * as a positive or negative term; without one, "more like this" searches by the image itself.
   */
  function addTerm(list, id, name) {
    if (state.view !== 'search') setView('search');
    if (!canCombine()) {
      if (list === 'positive') startSimilar(id, name);
      return;
    }
    if (list === 'negative' && state.mode === 'image' && state.imageId === id) {
      toast('The image searched for cannot also be pushed away', 'error');
      return;
    }
    const other = list === 'positive' ? 'negative' : 'positive';
    state[other] = state[other].filter((t) => t.id !== id);
    const known = state[list].some((t) => t.id === id) || (list === 'positive' && state.mode === 'image' && state.imageId === id);
    if (!known) state[list].push({ id, name });
    renderTerms();
    runSearch();
  }

  /** With the text gone, the first "more like" image becomes the search; with none left, terms go. */
  function promoteTerm() {
    const first = state.positive.shift();
    if (!first) { state.negative = []; renderTerms(); return false; }
    state.mode = 'image';
    state.imageId = first.id;
    state.imageName = first.name;
    showImageChip(first.id, first.name);
    renderTerms();
    return true;
  }

  function removeTerm(list, id, opts = {}) {
    const i = state[list].findIndex((t) => t.id === id);
    if (i < 0) return;
    state[list].splice(i, 1);
    renderTerms();
    if (!opts.keepFocus) {
      const buttons = Array.from(el.terms.querySelectorAll('.chip-close'));
      (buttons[Math.min(i, buttons.length - 1)] || el.q).focus();
    }
    runSearch();
  }

  function combined(main, offset) {
    const body = Object.assign({}, main, { top_k: topK() });
    if (offset) body.offset = offset;
    if (state.positive.length) body.positive = state.positive.map((t) => ({ image_id: t.id, weight: 1 }));
    if (state.negative.length) body.negative = state.negative.map((t) => ({ image_id: t.id, weight: 1 }));
    const filters = currentFilters();
    if (Object.keys(filters).length) body.filters = filters;
    const sort = sortValue();
    if (sort !== 'relevance') body.sort = sort;
    return body;
  }

  function renderTerms() {
    const items = [];
    for (const [list, label, cls] of [['positive', 'More like', 'term-pos'], ['negative', 'Less like', 'term-neg']]) {
      for (const t of state[list]) {
        items.push(make('li', { class: 'chip ' + cls, dataset: { list, id: t.id } }, [
          make('img', { src: thumbUrl(t.id, 64), alt: '', width: '28', height: '28' }),
          make('span', {}, [label + ' ', make('strong', { text: t.name })]),
          make('button', {
            type: 'button', class: 'chip-close', 'aria-label': 'Remove “' + label.toLowerCase() + ' ' + t.name + '”',
            onclick: () => removeTerm(list, t.id),
          }, '×'),
        ]));
      }
    }
    el.terms.replaceChildren(...items);
    el.terms.hidden = items.length === 0;
  }

  // ---------------------------------------------------------------- filters and order

  function checkedFormats() {
    return Array.from(el.filters.querySelectorAll('input[name="format"]:checked')).map((c) => c.value);
  }

  function sortValue() {
    const r = el.filters.querySelector('input[name="sort"]:checked');
    return r ? r.value : 'relevance';
  }

  /** The filters as `POST /search` takes them; absent keys for controls left empty. */
  function currentFilters() {
    const f = {};
    if (el.fAfter.value) f.taken_after = el.fAfter.value;
    if (el.fBefore.value) f.taken_before = el.fBefore.value;
    if (el.fCamera.value) f.camera = [el.fCamera.value];
    if (el.fFolder.value.trim()) f.folder = el.fFolder.value.trim();
    const formats = checkedFormats();
    if (formats.length) f.format = formats;
    return f;
  }

  function filtersActive() {
    return Object.keys(currentFilters()).length > 0;
  }

  /** Without a text or an image, filters or a date order list the matching images. */
  function browseWanted() {
    return filtersActive() || sortValue() !== 'relevance';
  }

  function browseParams(offset) {
    const f = currentFilters();
    const p = new URLSearchParams();
    p.set('limit', String(topK()));
    if (offset) p.set('offset', String(offset));
    const sort = sortValue();
    if (sort !== 'relevance') p.set('sort', sort);
    for (const key of ['taken_after', 'taken_before', 'folder']) if (f[key]) p.set(key, f[key]);
    if (f.camera) p.set('camera', f.camera.join(','));
    if (f.format) p.set('format', f.format.join(','));
    return p;
  }

  /** On a phone the filter bar folds away behind a button that counts the filters set. */
  function renderFiltersToggle() {
    const n = Object.keys(currentFilters()).length + (sortValue() !== 'relevance' ? 1 : 0);
    setText(el.filtersToggle, n ? 'Filters · ' + n : 'Filters');
  }

  function toggleFilters() {
    const open = el.filtersToggle.getAttribute('aria-expanded') !== 'true';
    el.filtersToggle.setAttribute('aria-expanded', String(open));
    el.filters.classList.toggle('is-open', open);
    if (open) el.fAfter.focus();
  }

  function onFiltersChanged() {
    el.fClear.hidden = !filtersActive();
    renderFiltersToggle();
    if (state.mode === 'photo') {
      // POST /search/image takes no filters: say so rather than send the photo again.
      renderResults(null, null);
      return;
    }
    if (state.mode === 'browse' && !browseWanted()) { clearSearch({ browse: false }); return; }
    runSearch();
  }

  function clearFilters() {
    el.fAfter.value = '';
    el.fBefore.value = '';
    el.fCamera.value = '';
    el.fFolder.value = '';
    for (const c of el.filters.querySelectorAll('input[name="format"]')) c.checked = false;
    onFiltersChanged();
    el.fAfter.focus();
  }

  /** "make model" as the camera filter matches it, and a shorter label when the model repeats the make. */
  function cameraValue(c) {
    return c ? [c.make, c.model].filter(Boolean).join(' ').trim() : '';
  }

  function cameraLabel(c) {
    if (!c) return '';
    const make = (c.make || '').trim();
    const model = (c.model || '').trim();
    if (make && model && model.toLowerCase().startsWith(make.toLowerCase().split(' ')[0])) return model;
    return [make, model].filter(Boolean).join(' ');
  }

  /** EXIF time as the camera wrote it ("2019-07-14 12:30:05 +02:00"); the date only when short. */
  function formatTaken(t, short) {
    if (!t) return '';
    const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}(?::\d{2})?)(?:\.\d+)?(Z|[+-]\d{2}:\d{2})?$/.exec(String(t));
    if (!m) return String(t);
    if (short) return m[1];
    return m[1] + ' ' + m[2] + (m[3] ? ' ' + (m[3] === 'Z' ? 'UTC' : m[3]) : '');
  }

  /**
   * Fills the camera picker with every camera in the index. There is no endpoint listing them, so
   * this pages through GET /images (capped, so a huge index costs a bounded number of requests).
   */
  const CAMERA_PAGES = 20;
  let camerasLoading = null;
  async function loadCameras() {
    if (camerasLoading) return camerasLoading;
    camerasLoading = (async () => {
      const found = new Map();
      try {
        for (let page = 0, offset = 0; page < CAMERA_PAGES; page++) {
          const res = await api('GET', '/images?limit=1000&offset=' + offset);
          const images = res && Array.isArray(res.images) ? res.images : [];
          for (const img of images) {
            const value = cameraValue(img.camera);
            if (value && !found.has(value.toLowerCase())) found.set(value.toLowerCase(), { value, label: cameraLabel(img.camera) });
          }
          offset += images.length;
          if (!res.more || !images.length) break;
        }
      } catch (_) {
        return; // the picker keeps what it had; the next refresh tries again
      }
      const current = el.fCamera.value;
      const options = Array.from(found.values()).sort((a, b) => a.label.localeCompare(b.label));
      const nodes = [make('option', { value: '', text: 'Any camera' })];
      for (const o of options) nodes.push(make('option', { value: o.value, text: o.label }));
      if (current && !found.has(current.toLowerCase())) nodes.push(make('option', { value: current, text: current }));
      el.fCamera.replaceChildren(...nodes);
      el.fCamera.value = current;
      el.fCamera.dataset.loaded = 'true';
    })().finally(() => { camerasLoading = null; });
    return camerasLoading;
  }

  // ---------------------------------------------------------------- duplicates

  function setView(view) {
    state.view = view;
    const dups = view === 'dups';
    el.viewSearch.setAttribute('aria-pressed', String(!dups));
    el.viewDups.setAttribute('aria-pressed', String(dups));
    el.searchView.hidden = dups;
    el.filtersToggle.hidden = dups;
    el.dupsView.hidden = !dups;
    if (dups) loadDuplicates();
  }

  function thresholdValue() {
    const v = parseFloat(el.dupsThresholdNum.value);
    return Number.isFinite(v) ? v : 0.95;
  }

  async function loadDuplicates() {
    clearTimeout(state.dupsDebounce);
    const seq = ++state.dupsSeq;
    const threshold = thresholdValue();
    el.dupsList.setAttribute('aria-busy', 'true');
    setText(el.dupsMeta, 'Looking for duplicates…');
    try {
      const res = await api('GET', '/duplicates?threshold=' + enc(String(threshold)));
      if (seq !== state.dupsSeq) return;
      hideError(el.dupsError);
      renderDuplicates(res && Array.isArray(res.groups) ? res.groups : []);
    } catch (err) {
      if (seq !== state.dupsSeq) return;
      el.dupsList.replaceChildren();
      setText(el.dupsMeta, '');
      showError(el.dupsError, err);
    } finally {
      if (seq === state.dupsSeq) el.dupsList.setAttribute('aria-busy', 'false');
    }
  }

  function renderDuplicates(groups) {
    const identical = groups.filter((g) => g.kind === 'identical').length;
    const similar = groups.length - identical;
    setText(el.dupsMeta, groups.length
      ? identical + (identical === 1 ? ' identical group' : ' identical groups') + ' · ' + similar + (similar === 1 ? ' similar group' : ' similar groups')
      : 'No duplicates at this threshold.');
    const nodes = groups.map((g, gi) => {
      const kind = g.kind === 'identical' ? 'identical' : 'similar';
      const images = Array.isArray(g.images) ? g.images : [];
      const titleId = 'dup-group-' + gi;
      const title = kind === 'identical'
        ? 'Identical · ' + images.length + ' files'
        : 'Similar · ' + images.length + ' images · score ≥ ' + formatScore(g.min_score);
      return make('section', { class: 'dup-group', 'aria-labelledby': titleId, dataset: { kind } }, [
        make('h2', { class: 'dup-title', id: titleId }, [
          make('span', { class: 'badge badge-' + kind, text: kind === 'identical' ? 'Identical' : 'Similar' }),
          make('span', { text: kind === 'identical'
            ? 'The same picture at ' + images.length + ' paths'
            : images.length + ' look-alike images, similarity ≥ ' + formatScore(g.min_score) }),
        ]),
        make('ul', { class: 'dup-images', 'aria-label': title }, images.map((img) => {
          const name = baseName(img.path);
          const thumb = make('span', { class: 'thumb' }, make('img', { src: thumbUrl(img.id, 256), alt: '', loading: 'lazy', decoding: 'async' }));
          const pic = thumb.firstChild;
          pic.addEventListener('load', () => thumb.classList.add('is-loaded'), { once: true });
          pic.addEventListener('error', () => thumb.classList.add('is-missing'), { once: true });
          return make('li', {}, make('button', {
            type: 'button', class: 'card dup-card', title: img.path, dataset: { id: img.id, path: img.path },
            onclick: (e) => openDetailById(img.id, e.currentTarget),
          }, [
            thumb,
            make('span', { class: 'card-body' }, [
              make('span', { class: 'card-name', text: name }),
              make('span', { class: 'card-dir', text: '\u200E' + dirName(img.path) + '\u200E' }),
              typeof img.score === 'number' ? make('span', { class: 'card-info', text: 'Score ' + formatScore(img.score) }) : null,
            ]),
          ]));
        })),
      ]);
    });
    el.dupsList.replaceChildren(...nodes);
  }

  function startSimilar(id, name) {
    if (state.view !== 'search') setView('search');
    state.mode = 'image';
    state.imageId = id;
    state.imageName = name;
    state.positive = [];
    state.negative = [];
    renderTerms();
    setPhoto(null);
    el.q.value = '';
    showImageChip(id, name);
    runSearch();
  }

  function showImageChip(id, name) {
    setImageSrc(el.chipImg, thumbUrl(id, 64));
    setText(el.chipName, name);
    el.chip.hidden = false;
  }

  function setPhoto(file) {
    if (state.photoUrl) URL.revokeObjectURL(state.photoUrl);
    state.photo = file;
    state.photoUrl = file ? URL.createObjectURL(file) : null;
  }

  /** Searches with a photo from this computer; the server does not add it to the index. */
  function startPhotoSearch(file) {
    if (!file) return;
    state.mode = 'photo';
    state.imageId = null;
    state.positive = [];
    state.negative = [];
    renderTerms();
    setPhoto(file);
    el.q.value = '';
    el.chipImg.src = state.photoUrl;
    setText(el.chipName, file.name);
    el.chip.hidden = false;
    runSearch();
  }

  async function deleteCurrent() {
    const id = state.detailId;
    if (!id) return;
    el.detailConfirmYes.disabled = true;
    try {
      await api('DELETE', '/images/' + enc(id));
      const name = el.detailTitle.textContent;
      state.results = state.results.filter((r) => r.id !== id);
      state.detailReturnFocus = null;
      closeDetail();
      const wasTerm = state.positive.some((t) => t.id === id) || state.negative.some((t) => t.id === id);
      if (state.mode === 'image' && state.imageId === id) {
        clearSearch();
      } else if (wasTerm) {
        // A deleted image can no longer pull or push the query: drop its term and search again.
        state.positive = state.positive.filter((t) => t.id !== id);
        state.negative = state.negative.filter((t) => t.id !== id);
        renderTerms();
        runSearch();
      } else if (state.mode !== 'idle') {
        renderResults(null, null);
      }
      toast('Removed ' + name + ' from the index', 'ok');
      refreshHealth();
      const first = cards()[0];
      (first || el.q).focus();
    } catch (err) {
      el.detailConfirm.hidden = true;
      el.detailDelete.hidden = false;
      showError(el.detailError, err);
    } finally {
      el.detailConfirmYes.disabled = false;
    }
  }

  // ---------------------------------------------------------------- upload

  let uploadQueue = [];
  let uploadsActive = 0;

  function addFiles(fileList) {
    const files = Array.from(fileList || []);
    if (!files.length) return;
    for (const file of files) {
      const row = uploadRow(file);
      el.uploads.prepend(row.node);
      uploadQueue.push({ file, row });
    }
    while (el.uploads.children.length > MAX_UPLOAD_ROWS) el.uploads.lastElementChild.remove();
    pumpUploads();
  }

  function uploadRow(file) {
    const progress = make('progress', { class: 'progress', max: '100', value: '0', 'aria-label': 'Upload of ' + file.name });
    const status = make('span', { class: 'upload-status', text: 'Waiting…' });
    const actions = make('span', { class: 'upload-actions' });
    const node = make('li', { class: 'upload', dataset: { filename: file.name, status: 'waiting' } }, [
      make('div', { class: 'upload-head' }, [
        make('span', { class: 'upload-name', title: file.name, text: file.name }),
        make('span', { class: 'upload-size', text: formatBytes(file.size) }),
      ]),
      progress,
      make('div', { class: 'upload-foot' }, [status, actions]),
    ]);
    return { node, progress, status, actions };
  }

  function pumpUploads() {
    while (uploadsActive < UPLOAD_CONCURRENCY && uploadQueue.length) {
      const job = uploadQueue.shift();
      uploadsActive++;
      uploadOne(job.file, job.row).finally(() => {
        uploadsActive--;
        pumpUploads();
        if (!uploadsActive && !uploadQueue.length) { refreshHealth(); loadCameras(); }
      });
    }
  }

  function setUploadState(row, status, text) {
    row.node.dataset.status = status;
    setText(row.status, text);
  }

  function uploadOne(file, row) {
    return new Promise((resolve) => {
      const xhr = new XMLHttpRequest();
      const form = new FormData();
      form.append('files', file, file.name);
      xhr.open('POST', '/ingest/upload');
      for (const [name, value] of Object.entries(authHeaders({ Accept: 'application/json' }))) xhr.setRequestHeader(name, value);
      xhr.timeout = 10 * 60 * 1000;
      setUploadState(row, 'uploading', 'Uploading…');
      xhr.upload.addEventListener('progress', (e) => {
        if (!e.lengthComputable) return;
        const pct = Math.round((e.loaded / e.total) * 100);
        row.progress.value = pct;
        setText(row.status, 'Uploading ' + pct + '%');
      });
      xhr.upload.addEventListener('load', () => {
        row.progress.removeAttribute('value'); // indeterminate while the server indexes it
        setUploadState(row, 'indexing', 'Indexing…');
      });
      xhr.addEventListener('load', async () => {
        if (xhr.status === 401 && await recoverFrom401()) {
          resolve(uploadOne(file, row));
          return;
        }
        row.progress.value = 100;
        if (xhr.status >= 200 && xhr.status < 300) {
          let body = null;
          try { body = JSON.parse(xhr.responseText); } catch (_) { /* handled below */ }
          const results = body && Array.isArray(body.results) ? body.results : [];
          const r = results.find((x) => x.filename === file.name) || results[0];
          if (!r) {
            failUpload(row, new ApiError(xhr.status, 'bad_response', 'The server did not say what happened to this file.'));
          } else if (r.status === 'ok') {
            const dup = !!r.duplicate;
            setUploadState(row, dup ? 'duplicate' : 'ok', dup ? 'Already indexed' : 'Indexed');
            row.node.dataset.id = r.id || '';
            if (r.id) {
              row.actions.replaceChildren(make('button', {
                type: 'button', class: 'link-btn', text: 'View',
                'aria-label': 'View ' + file.name,
                onclick: (e) => openDetailById(r.id, e.currentTarget),
              }), make('button', {
                type: 'button', class: 'link-btn', text: 'Similar',
                'aria-label': 'Images similar to ' + file.name,
                onclick: () => startSimilar(r.id, file.name),
              }));
            }
            if (!dup && state.mode !== 'idle') runSearch({ quiet: true });
          } else {
            const e = r.error || {};
            failUpload(row, new ApiError(xhr.status, e.code || 'error', e.message || 'The file could not be indexed.'));
          }
        } else {
          failUpload(row, errorFrom(xhr.status, xhr.statusText, xhr.responseText));
        }
        resolve();
      });
      xhr.addEventListener('error', () => { failUpload(row, new ApiError(0, 'network_error', 'The upload failed: could not reach the server.')); resolve(); });
      xhr.addEventListener('timeout', () => { failUpload(row, new ApiError(0, 'timeout', 'The upload timed out.')); resolve(); });
      xhr.addEventListener('abort', () => { failUpload(row, new ApiError(0, 'aborted', 'The upload was cancelled.')); resolve(); });
      xhr.send(form);
    });
  }

  function failUpload(row, err) {
    row.progress.value = 100;
    setUploadState(row, 'error', err.message);
    row.status.title = err.code || '';
    row.actions.replaceChildren(make('code', { class: 'alert-code', text: err.code }));
  }

  function setupDropzone() {
    let depth = 0;
    const hasFiles = (e) => e.dataTransfer && Array.from(e.dataTransfer.types || []).includes('Files');
    el.dropzone.addEventListener('dragenter', (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      depth++;
      el.dropzone.dataset.state = 'over';
    });
    el.dropzone.addEventListener('dragover', (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      e.dataTransfer.dropEffect = 'copy';
    });
    el.dropzone.addEventListener('dragleave', () => {
      depth = Math.max(0, depth - 1);
      if (!depth) el.dropzone.dataset.state = 'idle';
    });
    el.dropzone.addEventListener('drop', (e) => {
      e.preventDefault();
      depth = 0;
      el.dropzone.dataset.state = 'idle';
      addFiles(e.dataTransfer && e.dataTransfer.files);
    });
    // A file dropped beside the zone must not make the browser navigate away from the page.
    window.addEventListener('dragover', (e) => { if (hasFiles(e)) e.preventDefault(); });
    window.addEventListener('drop', (e) => { if (hasFiles(e)) e.preventDefault(); });
    el.fileInput.addEventListener('change', () => {
      addFiles(el.fileInput.files);
      el.fileInput.value = '';
    });
  }

  // ---------------------------------------------------------------- directory jobs

  const ACTIVE = new Set(['queued', 'running', 'cancelling']);
  const CANCELLABLE = new Set(['queued', 'running']);
  const JOBS_IDLE_POLL_MS = 10000;

  async function submitJob(e) {
    e.preventDefault();
    const path = el.jobPath.value.trim();
    if (!path) {
      showError(el.jobError, new ApiError(0, '', 'Enter the path of a folder on the server, under one of its image roots.'));
      el.jobPath.focus();
      return;
    }
    hideError(el.jobError);
    el.jobSubmit.disabled = true;
    try {
      const job = await api('POST', '/ingest/directory', { path, recursive: el.jobRecursive.checked });
      toast('Ingest of ' + (job && job.path ? job.path : path) + ' queued', 'ok');
      state.jobsAvailable = true;
      if (job && job.id) {
        // Show it at once, before the next poll.
        el.jobsEmpty.hidden = true;
        let node = el.jobs.querySelector('[data-job-id="' + CSS.escape(job.id) + '"]');
        if (!node) { node = jobNode(job); el.jobs.prepend(node); }
        updateJob(node, job);
        state.jobStates.set(job.id, job.state);
      }
      await loadJobs();
    } catch (err) {
      showError(el.jobError, err);
    } finally {
      el.jobSubmit.disabled = false;
    }
  }

  async function loadJobs() {
    clearTimeout(state.jobsTimer);
    let jobs;
    try {
      const res = await api('GET', '/jobs');
      jobs = res && Array.isArray(res.jobs) ? res.jobs : [];
      state.jobsAvailable = true;
    } catch (err) {
      if (err.status === 404 || err.status === 405) {
        state.jobsAvailable = false;
        setText(el.jobsEmpty, 'Job list unavailable: ' + err.message);
        el.jobsEmpty.hidden = false;
      } else {
        state.jobsTimer = setTimeout(loadJobs, JOBS_POLL_MS * 3);
      }
      return;
    }
    renderJobs(jobs);
    let finishedSome = false;
    for (const j of jobs) {
      const before = state.jobStates.get(j.id);
      if (before && ACTIVE.has(before) && !ACTIVE.has(j.state)) finishedSome = true;
      state.jobStates.set(j.id, j.state);
    }
    if (jobs.some((j) => ACTIVE.has(j.state))) {
      state.jobsTimer = setTimeout(loadJobs, JOBS_POLL_MS);
      refreshHealthSoon();
    } else {
      state.jobsTimer = setTimeout(loadJobs, JOBS_IDLE_POLL_MS); // jobs started elsewhere show up too
    }
    if (finishedSome) {
      refreshHealth();
      loadCameras();
      if (state.mode !== 'idle') runSearch({ quiet: true });
      if (state.view === 'dups') loadDuplicates();
    }
  }

  let healthSoon = 0;
  function refreshHealthSoon() {
    const now = Date.now();
    if (now - healthSoon > 2000) { healthSoon = now; refreshHealth(); }
  }

  function renderJobs(jobs) {
    el.jobsEmpty.hidden = jobs.length > 0;
    setText(el.jobsEmpty, 'No ingest jobs yet.');
    const seen = new Set();
    let prev = null;
    for (const job of jobs) {
      seen.add(job.id);
      let node = el.jobs.querySelector('[data-job-id="' + CSS.escape(job.id) + '"]');
      if (!node) node = jobNode(job);
      updateJob(node, job);
      const want = prev ? prev.nextSibling : el.jobs.firstChild;
      if (want !== node) el.jobs.insertBefore(node, want);
      prev = node;
    }
    for (const node of Array.from(el.jobs.children)) {
      if (!seen.has(node.dataset.jobId)) node.remove();
    }
  }

  function jobNode(job) {
    const node = make('li', { class: 'job', dataset: { jobId: job.id } });
    const ref = {};
    ref.path = make('span', { class: 'job-path', title: job.path, text: '\u200E' + job.path + '\u200E' });
    ref.badge = make('span', { class: 'badge' });
    ref.progress = make('progress', { class: 'progress', max: '1', 'aria-label': 'Progress of ' + job.path });
    ref.counts = make('p', { class: 'job-counts' });
    ref.breakdown = make('p', { class: 'job-breakdown' });
    ref.rate = make('p', { class: 'job-rate' });
    ref.cancel = make('button', { type: 'button', class: 'btn btn-small', text: 'Cancel', 'aria-label': 'Cancel ingest of ' + job.path });
    ref.cancel.addEventListener('click', () => cancelJob(job.id, ref.cancel));
    ref.failures = make('details', { class: 'job-failures', hidden: true }, [make('summary'), make('ul')]);
    node.append(
      make('div', { class: 'job-head' }, [ref.path, ref.badge]),
      ref.progress,
      make('div', { class: 'job-line' }, [ref.counts, ref.cancel]),
      ref.breakdown,
      ref.rate,
      ref.failures,
    );
    node._ref = ref;
    return node;
  }

  function updateJob(node, job) {
    const ref = node._ref;
    node.dataset.state = job.state;
    setText(ref.badge, job.state);
    ref.badge.className = 'badge badge-' + job.state;
    const total = Number(job.total) || 0;
    const done = Number(job.done) || 0;
    if (total > 0) {
      ref.progress.max = total;
      ref.progress.value = Math.min(done, total);
    } else if (ACTIVE.has(job.state)) {
      ref.progress.removeAttribute('value');
    } else {
      ref.progress.max = 1;
      ref.progress.value = 1;
    }
    const nb = (n, word) => numberFmt.format(n || 0) + '\u00A0' + word; // keep "3 indexed" on one line
    let counts = numberFmt.format(done) + ' / ' + numberFmt.format(total) + '\u00A0done';
    if (total > 0) counts += ' · ' + Math.floor((Math.min(done, total) / total) * 100) + '%';
    else if (ACTIVE.has(job.state)) counts = 'Listing files…';
    setText(ref.counts, counts);
    setText(ref.breakdown, [nb(job.indexed, 'indexed'), nb(job.skipped, 'skipped'), nb(job.failed, 'failed')].join(' · '));
    const more = [];
    if (job.recursive) more.push('recursive');
    if (ACTIVE.has(job.state)) {
      if (job.rate) more.push(Number(job.rate).toFixed(1) + ' img/s');
      if (job.eta_seconds != null) more.push('ETA ' + formatDuration(job.eta_seconds));
    } else if (job.finished_at) {
      more.push('finished ' + formatTime(job.finished_at));
      if (job.rate) more.push(Number(job.rate).toFixed(1) + ' img/s');
    }
    if (job.state === 'queued' && job.created_at) more.push('queued ' + formatTime(job.created_at));
    setText(ref.rate, more.join(' · '));
    ref.cancel.hidden = !CANCELLABLE.has(job.state);
    const failures = Array.isArray(job.failures) ? job.failures : [];
    const failedCount = Math.max(failures.length, Number(job.failed) || 0);
    ref.failures.hidden = failures.length === 0 && !job.error;
    if (!ref.failures.hidden && ref.failures.dataset.count !== String(failures.length) + (job.error || '')) {
      ref.failures.dataset.count = String(failures.length) + (job.error || '');
      const summary = ref.failures.querySelector('summary');
      summary.textContent = job.error && !failures.length ? 'Why it failed' : failedCount + (failedCount === 1 ? ' failure' : ' failures');
      const list = ref.failures.querySelector('ul');
      list.replaceChildren();
      if (job.error) list.append(make('li', {}, make('span', { class: 'failure-error', text: String(job.error.message || job.error) })));
      for (const f of failures) {
        list.append(make('li', {}, [
          make('code', { class: 'failure-path', text: f.path }),
          make('span', { class: 'failure-error', text: f.error && f.error.message ? f.error.message : String(f.error) }),
        ]));
      }
    }
  }

  async function cancelJob(id, button) {
    button.disabled = true;
    try {
      await api('POST', '/jobs/' + enc(id) + '/cancel');
      toast('Job cancelled', 'info');
    } catch (err) {
      toast('Could not cancel: ' + err.message, 'error');
    } finally {
      button.disabled = false;
      loadJobs();
    }
  }

  // ---------------------------------------------------------------- keyboard & wiring

  function isTypingTarget(t) {
    if (!t) return false;
    const tag = t.tagName;
    return tag === 'INPUT' || tag === 'TEXTAREA' || tag === 'SELECT' || t.isContentEditable;
  }

  function onGlobalKey(e) {
    if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey) return;
    if (el.dialog.open) {
      if (isTypingTarget(e.target)) return;
      if (e.key === 'ArrowLeft') { e.preventDefault(); stepDetail(-1); }
      else if (e.key === 'ArrowRight') { e.preventDefault(); stepDetail(1); }
      return;
    }
    if (e.key === '/' && !isTypingTarget(e.target)) {
      e.preventDefault();
      el.q.focus();
      el.q.select();
    }
  }

  function onSearchKey(e) {
    if (e.key === 'ArrowDown') {
      const first = cards()[0];
      if (first) { e.preventDefault(); first.focus(); }
    } else if (e.key === 'Escape' && !el.q.value && (state.mode === 'image' || state.mode === 'photo')) {
      clearSearch();
    }
  }

  function init() {
    el.form.addEventListener('submit', (e) => { e.preventDefault(); runSearch(); });
    el.q.addEventListener('input', onQueryInput);
    el.q.addEventListener('keydown', onSearchKey);
    el.topK.addEventListener('change', () => { if (state.mode !== 'idle') runSearch(); });
    el.results.addEventListener('click', onGridClick);
    el.results.addEventListener('keydown', onGridKey);
    el.chipClear.addEventListener('click', () => { clearSearch(); el.q.focus(); });
    document.addEventListener('keydown', onGlobalKey);

    el.detailClose.addEventListener('click', closeDetail);
    el.dialog.addEventListener('close', onDetailClosed);
    el.dialog.addEventListener('click', (e) => { if (e.target === el.dialog) closeDetail(); });
    el.detailSimilar.addEventListener('click', () => likeFromDetail('positive'));
    el.detailLess.addEventListener('click', () => likeFromDetail('negative'));
    // With a key, a plain link would open the file without it: open the fetched copy instead.
    el.detailOpen.addEventListener('click', (e) => {
      if (!currentKey()) return;
      e.preventDefault();
      const tab = window.open('', '_blank');
      blobUrl(el.detailOpen.href).then((u) => { if (tab) tab.location.href = u; }, (err) => {
        if (tab) tab.close();
        showError(el.detailError, err);
      });
    });
    el.filters.addEventListener('submit', (e) => e.preventDefault());
    el.filters.addEventListener('change', (e) => {
      if (e.target === el.fFolder) return; // typed: handled on input, after a pause
      clearTimeout(state.filterDebounce);
      onFiltersChanged();
    });
    el.fFolder.addEventListener('input', () => {
      clearTimeout(state.filterDebounce);
      state.filterDebounce = setTimeout(onFiltersChanged, SEARCH_DEBOUNCE_MS * 2);
    });
    el.fFolder.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') { e.preventDefault(); clearTimeout(state.filterDebounce); onFiltersChanged(); }
    });
    el.fClear.addEventListener('click', clearFilters);
    el.filtersToggle.addEventListener('click', toggleFilters);
    el.more.addEventListener('click', () => runSearch({ append: true }));
    el.viewSearch.addEventListener('click', () => setView('search'));
    el.viewDups.addEventListener('click', () => setView('dups'));
    el.dupsForm.addEventListener('submit', (e) => { e.preventDefault(); loadDuplicates(); });
    el.dupsThreshold.addEventListener('input', () => {
      el.dupsThresholdNum.value = el.dupsThreshold.value;
      clearTimeout(state.dupsDebounce);
      state.dupsDebounce = setTimeout(loadDuplicates, SEARCH_DEBOUNCE_MS);
    });
    el.dupsThresholdNum.addEventListener('change', () => {
      const v = thresholdValue();
      if (v >= Number(el.dupsThreshold.min)) el.dupsThreshold.value = String(v);
      loadDuplicates();
    });
    el.detailDelete.addEventListener('click', () => {
      el.detailDelete.hidden = true;
      el.detailConfirm.hidden = false;
      el.detailConfirmNo.focus();
    });
    el.detailConfirmNo.addEventListener('click', () => {
      el.detailConfirm.hidden = true;
      el.detailDelete.hidden = false;
      el.detailDelete.focus();
    });
    el.detailConfirmYes.addEventListener('click', deleteCurrent);
    el.detailPrev.addEventListener('click', () => stepDetail(-1));
    el.detailNext.addEventListener('click', () => stepDetail(1));
    el.detailImg.addEventListener('error', () => {
      if (el.dialog.open && state.detailId && !el.detailImg.dataset.fallback) {
        el.detailImg.dataset.fallback = '1';
        setImageSrc(el.detailImg, thumbUrl(state.detailId, 1024));
        return;
      }
      if (el.dialog.open && el.detailImg.getAttribute('src')) {
        showError(el.detailError, new ApiError(0, 'image_unavailable', 'The image file could not be loaded.'));
      }
    });

    setupDropzone();
    el.photoInput.addEventListener('change', () => {
      startPhotoSearch(el.photoInput.files[0]);
      el.photoInput.value = '';
    });
    // An image dropped on the search bar searches with it (without indexing it).
    el.form.addEventListener('dragover', (e) => {
      if (!e.dataTransfer || !Array.from(e.dataTransfer.types || []).includes('Files')) return;
      e.preventDefault();
      el.form.dataset.drop = 'over';
    });
    el.form.addEventListener('dragleave', () => { delete el.form.dataset.drop; });
    el.form.addEventListener('drop', (e) => {
      delete el.form.dataset.drop;
      const file = e.dataTransfer && e.dataTransfer.files && e.dataTransfer.files[0];
      if (!file) return;
      e.preventDefault();
      e.stopPropagation();
      startPhotoSearch(file);
    });
    el.jobForm.addEventListener('submit', submitJob);

    renderEmpty();
    refreshHealth();
    loadJobs();
    loadCameras();

    if (restoreFromUrl()) runSearch();
    document.documentElement.dataset.ready = 'true';
  }

  init();
})();
