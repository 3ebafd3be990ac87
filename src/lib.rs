//! VisionQuery: self-hosted text-to-image semantic search with CLIP.
//!
//! The crate is split into three rooms with one-way dependencies:
//! - [`api`]: the only module that knows HTTP (router, DTOs, error → status, metrics endpoint, docs).
//! - [`embed`]: CLIP — tokenizer, image preprocessing, ONNX sessions and the batching queues.
//! - [`store`]: the [`store::VectorStore`] trait and its embedded backend.
//!
//! [`engine`] is the small core that joins them (path policy, dedup, ingest, search) so the HTTP
//! handlers and the CLI share one pipeline.

pub mod api;
pub mod auth;
pub mod background;
pub mod config;
pub mod embed;
pub mod engine;
pub mod fsutil;
pub mod malloc;
pub mod metrics;
pub mod service;
pub mod store;
