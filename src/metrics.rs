//! Every Prometheus metric the service exports, named in one place.
//!
//! Other modules call the small functions here instead of naming metrics themselves, so the
//! Grafana dashboard and this file are the only two places that spell a metric name.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const HTTP_REQUESTS: &str = "vq_http_requests_total";
pub const HTTP_DURATION: &str = "vq_http_request_duration_seconds";
pub const EMBED_DURATION: &str = "vq_embed_duration_seconds";
pub const EMBED_BATCH_SIZE: &str = "vq_embed_batch_size";
pub const EMBED_QUEUE_DEPTH: &str = "vq_embed_queue_depth";
pub const INDEX_IMAGES: &str = "vq_index_images";
pub const STORE_UP: &str = "vq_store_up";
pub const MODEL_LOADED: &str = "vq_model_loaded";
pub const MODEL_STATE: &str = "vq_model_state";
pub const INGEST_IMAGES: &str = "vq_ingest_images_total";
pub const INGEST_JOBS_RUNNING: &str = "vq_ingest_jobs_running";
pub const INGEST_JOB_FILES: &str = "vq_ingest_job_files_total";
pub const IMAGE_DECODES: &str = "vq_image_decodes_total";
pub const BUILD_INFO: &str = "vq_build_info";
pub const RATE_LIMITED: &str = "vq_rate_limited_total";
pub const WATCH_ROOTS: &str = "vq_watch_roots";
pub const WATCH_EVENTS: &str = "vq_watch_events_total";
pub const WATCH_PENDING: &str = "vq_watch_pending";
pub const WATCH_LAST_RECONCILE: &str = "vq_watch_last_reconcile_timestamp_seconds";
pub const WATCH_REMOVED: &str = "vq_watch_removed_total";

/// Kinds of file system events the watcher counts (see [`watch_event`]).
pub const WATCH_EVENT_KINDS: [&str; 9] = ["create", "modify", "close_write", "remove", "rename", "rescan", "excluded", "dropped", "error"];

const MODEL_STATES: [&str; 3] = ["loading", "ready", "failed"];
const MODALITIES: [&str; 2] = ["text", "image"];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once and returns the handle that renders `/metrics`.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let latency = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
            let batch = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.into()), &latency)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(EMBED_DURATION.into()), &latency))
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(EMBED_BATCH_SIZE.into()), &batch))
                .and_then(|b| b.install_recorder())
                .expect("installing the Prometheus recorder: this is a bug (buckets are constants, installed once)");
            describe_and_preregister();
            handle
        })
        .clone()
}

/// Descriptions, plus zero values so every series a dashboard queries exists from the start.
fn describe_and_preregister() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(HTTP_REQUESTS, "HTTP requests by route, method and status");
    describe_histogram!(HTTP_DURATION, Unit::Seconds, "HTTP request latency by route, method and status");
    describe_histogram!(EMBED_DURATION, Unit::Seconds, "Model inference time per batch, by modality");
    describe_histogram!(EMBED_BATCH_SIZE, "Inputs per model batch, by modality");
    describe_gauge!(EMBED_QUEUE_DEPTH, "Requests waiting for the model, by modality");
    describe_gauge!(INDEX_IMAGES, "Images in the index");
    describe_gauge!(STORE_UP, "1 while the index store (database) answers, 0 while it cannot be reached");
    describe_gauge!(MODEL_LOADED, "1 when the model is loaded and serving");
    describe_gauge!(MODEL_STATE, "1 for the model's current state (loading, ready, failed)");
    describe_counter!(INGEST_IMAGES, "Single-image ingests by outcome (indexed, duplicate, failed)");
    describe_gauge!(INGEST_JOBS_RUNNING, "Directory ingest jobs running");
    describe_counter!(INGEST_JOB_FILES, "Files handled by directory jobs, by outcome (indexed, skipped, failed)");
    describe_counter!(IMAGE_DECODES, "Image decodes, by purpose (ingest, upload, thumbnail)");
    describe_gauge!(BUILD_INFO, "Build information");
    describe_counter!(RATE_LIMITED, "Requests refused with 429 by the rate limit, by key name (\"anonymous\" without a key)");

    describe_gauge!(WATCH_ROOTS, "Image roots watched for changes (--watch)");
    describe_counter!(
        WATCH_EVENTS,
        "File system events the watcher received, by kind (excluded: ignored by the exclusion globs; dropped: over the pending cap, caught by a rescan)"
    );
    describe_gauge!(WATCH_PENDING, "Paths the watcher waits on: settling, or to be handed to the next watch job");
    describe_gauge!(
        WATCH_LAST_RECONCILE,
        Unit::Seconds,
        "When the watcher last finished comparing the roots with the index (Unix time; 0 before the first pass)"
    );
    describe_counter!(WATCH_REMOVED, "Images the watcher took out of the index because their file was deleted");

    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    for kind in WATCH_EVENT_KINDS {
        metrics::counter!(WATCH_EVENTS, "kind" => kind).increment(0);
    }
    metrics::gauge!(WATCH_ROOTS).set(0.0);
    metrics::gauge!(WATCH_PENDING).set(0.0);
    // 0 means "no pass yet" (or not watching); the dashboard shows only positive times.
    metrics::gauge!(WATCH_LAST_RECONCILE).set(0.0);
    metrics::counter!(WATCH_REMOVED).increment(0);
    for modality in MODALITIES {
        metrics::gauge!(EMBED_QUEUE_DEPTH, "modality" => modality).set(0.0);
    }
    for outcome in ["indexed", "duplicate", "failed"] {
        metrics::counter!(INGEST_IMAGES, "outcome" => outcome).increment(0);
    }
    for outcome in ["indexed", "skipped", "failed"] {
        metrics::counter!(INGEST_JOB_FILES, "outcome" => outcome).increment(0);
    }
    metrics::gauge!(INGEST_JOBS_RUNNING).set(0.0);
    for purpose in ["ingest", "upload", "thumbnail"] {
        metrics::counter!(IMAGE_DECODES, "purpose" => purpose).increment(0);
    }
    // Present from the start, so dashboards and alerts see 0 rather than "no data".
    metrics::counter!(RATE_LIMITED, "key" => "anonymous").increment(0);
    metrics::gauge!(STORE_UP).set(0.0);
}

pub fn http_request(route: &str, method: &str, status: u16, elapsed: Duration) {
    let labels = [("route", route.to_string()), ("method", method.to_string()), ("status", status.to_string())];
    metrics::counter!(HTTP_REQUESTS, &labels).increment(1);
    metrics::histogram!(HTTP_DURATION, &labels).record(elapsed.as_secs_f64());
}

pub fn embed_batch(modality: &'static str, size: usize, elapsed: Duration) {
    metrics::histogram!(EMBED_BATCH_SIZE, "modality" => modality).record(size as f64);
    metrics::histogram!(EMBED_DURATION, "modality" => modality).record(elapsed.as_secs_f64());
}

pub fn embed_queue_depth(modality: &'static str, depth: usize) {
    metrics::gauge!(EMBED_QUEUE_DEPTH, "modality" => modality).set(depth as f64);
}

pub fn model_state(current: &str) {
    for state in MODEL_STATES {
        metrics::gauge!(MODEL_STATE, "state" => state).set(if state == current { 1.0 } else { 0.0 });
    }
    metrics::gauge!(MODEL_LOADED).set(if current == "ready" { 1.0 } else { 0.0 });
}

pub fn index_size(images: usize) {
    metrics::gauge!(INDEX_IMAGES).set(images as f64);
}

pub fn store_up(up: bool) {
    metrics::gauge!(STORE_UP).set(if up { 1.0 } else { 0.0 });
}

pub fn ingest(outcome: &'static str) {
    metrics::counter!(INGEST_IMAGES, "outcome" => outcome).increment(1);
}

pub fn jobs_running(count: usize) {
    metrics::gauge!(INGEST_JOBS_RUNNING).set(count as f64);
}

pub fn job_file(outcome: &'static str) {
    metrics::counter!(INGEST_JOB_FILES, "outcome" => outcome).increment(1);
}

pub fn image_decode(purpose: &'static str) {
    metrics::counter!(IMAGE_DECODES, "purpose" => purpose).increment(1);
}

/// A request refused by the rate limit; `key` is the key's name or "anonymous", never the key.
pub fn rate_limited(key: &str) {
    metrics::counter!(RATE_LIMITED, "key" => key.to_string()).increment(1);
}

pub fn watch_roots(count: usize) {
    metrics::gauge!(WATCH_ROOTS).set(count as f64);
}

/// One file system event of `kind` (one of [`WATCH_EVENT_KINDS`]).
pub fn watch_event(kind: &'static str) {
    metrics::counter!(WATCH_EVENTS, "kind" => kind).increment(1);
}

pub fn watch_pending(paths: usize) {
    metrics::gauge!(WATCH_PENDING).set(paths as f64);
}

pub fn watch_reconciled(at: time::OffsetDateTime) {
    metrics::gauge!(WATCH_LAST_RECONCILE).set(at.unix_timestamp_nanos() as f64 / 1e9);
}

pub fn watch_removed(images: usize) {
    metrics::counter!(WATCH_REMOVED).increment(images as u64);
}
