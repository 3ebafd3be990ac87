//! Serving image bytes: an indexed image's own file and its thumbnails, with validators
//! (strong ETags), conditional GETs (304) and, for files, byte ranges (206) and HEAD.
//!
//! File streaming, ranges and `Last-Modified` are tower-http's `ServeFile`; this module adds
//! what it lacks: ETags, `If-None-Match` and `If-Range`, the media type policy and our JSON
//! errors. Which sizes exist and how they are rendered is the engine's business.

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tower_http::services::ServeFile;

use super::dto::ThumbnailQuery;
use super::error::{ApiError, ErrorBody};
use super::AppState;
use crate::embed::SourceFormat;
use crate::engine::{self, thumbnails, ImageFile};

/// Files are the user's photos: `private` keeps them out of shared caches (a proxy in front
/// of the service must not hand them to someone else). `no-cache` still lets a browser keep a
/// copy but makes it revalidate each use: the file behind an id can be edited in place, and the
/// ETag makes a revalidation a body-less 304.
const FILE_CACHE_CONTROL: &str = "private, no-cache";

/// The thumbnail of an (id, size) never changes while the rendering stays the same (ids are
/// content hashes), so browsers may reuse it for a week without asking. Not a year and not
/// `immutable`: a new release may render differently (the ETag carries the render version),
/// and a week bounds how long an old rendering lingers; after it, revalidation is a 304.
/// `private` for the same reason as files.
const THUMBNAIL_CACHE_CONTROL: &str = "private, max-age=604800";

/// The bytes of an indexed image, with its media type. Only indexed images are served.
/// Supports `Range` (206), `HEAD`, and conditional requests with `If-None-Match` (ETag) or
/// `If-Modified-Since` (304).
#[utoipa::path(get, path = "/images/{id}/file", tag = "images", params(("id" = String, Path, description = "Image id")), responses(
    (status = 200, description = "The image file", content_type = "image/*"),
    (status = 206, description = "The requested byte range (`Range: bytes=...`)", content_type = "image/*"),
    (status = 304, description = "Not modified (`If-None-Match` or `If-Modified-Since`)"),
    (status = 404, description = "Unknown image, or its file is gone", body = ErrorBody),
    (status = 416, description = "Range not satisfiable"),
    (status = 503, description = "Request timed out", body = ErrorBody)))]
pub async fn image_file(State(state): State<AppState>, Path(id): Path<String>, request: Request) -> Result<Response, ApiError> {
    let engine = state.engine.clone();
    let file = tokio::task::spawn_blocking(move || engine.current_file(&id))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))??;
    let etag = file_etag(&file);
    let (mut parts, body) = request.into_parts();
    if parts.headers.contains_key(header::IF_NONE_MATCH) {
        if none_match(&parts.headers, &etag) {
            return Ok(not_modified(&etag, FILE_CACHE_CONTROL));
        }
        // RFC 9110 §13.2.2: with If-None-Match present, If-Modified-Since is ignored.
        parts.headers.remove(header::IF_MODIFIED_SINCE);
    }
    // ServeFile does not read If-Range; without this, a client resuming a download of a file
    // that changed since would splice new bytes onto its old copy. Not the current strong tag:
    // send the whole file instead.
    if parts.headers.get(header::IF_RANGE).is_some_and(|v| v.as_bytes() != etag.as_bytes()) {
        parts.headers.remove(header::RANGE);
    }
    let mime = media_type(&file);
    // ServeFile opens what it is given by path: give it the descriptor's own name, which reopens
    // the file the engine opened beneath its root (the same inode, whatever the path names now).
    let served = ServeFile::new_with_mime(opened_file_path(&file.file), &mime).try_call(Request::from_parts(parts, body)).await;
    let gone = || ApiError::from(engine::EngineError::ImageFileGone { id: file.record.id.clone(), path: file.record.path.clone() });
    let mut response = match served {
        Ok(response) if response.status() == StatusCode::NOT_FOUND => return Err(gone()),
        Ok(response) => response.map(Body::new),
        Err(e) => {
            return Err(ApiError::from(engine::EngineError::Unreadable { path: file.path.display().to_string(), message: e.to_string() }))
        }
    };
    if response.status().is_success() || response.status() == StatusCode::NOT_MODIFIED {
        set_validators(response.headers_mut(), &etag, FILE_CACHE_CONTROL);
    }
    Ok(response)
}

/// A JPEG thumbnail of an indexed image. Sizes snap up to the cached ones (64, 128, 256, 512
/// or 1024 pixels on the longer side; never larger than the image itself), so `size=100`
/// returns a 128-pixel thumbnail. Strong ETag per (image, returned size); `If-None-Match` gives
/// 304 without rendering anything. Requests for a thumbnail being rendered wait for that render
/// (an image is decoded once per size, however many ask at once).
#[utoipa::path(get, path = "/images/{id}/thumbnail", tag = "images", params(("id" = String, Path, description = "Image id"), ThumbnailQuery), responses(
    (status = 200, description = "JPEG thumbnail whose longer side is the requested size rounded up to 64, 128, 256, 512 or 1024 (at most the image's own size)", content_type = "image/jpeg"),
    (status = 304, description = "Not modified (`If-None-Match`)"),
    (status = 404, body = ErrorBody),
    (status = 422, description = "Size outside 32..=1024", body = ErrorBody),
    (status = 503, description = "The render did not finish before the request deadline (`timeout`), or the index is unavailable", body = ErrorBody)))]
pub async fn image_thumbnail(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<ThumbnailQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query?;
    let (min, max) = (thumbnails::MIN_SIZE, thumbnails::MAX_SIZE);
    if !(min..=max).contains(&q.size) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_size",
            format!("size must be between {min} and {max}, got {}", q.size),
        ));
    }
    let size = thumbnails::snap(q.size);
    // The tag depends on the id and size only, so a revalidation needs no file read at all;
    // the image must still be indexed, though.
    let record = state.engine.image(&id)?;
    let etag = format!("\"{}-{size}-r{}\"", record.id, thumbnails::RENDER_VERSION);
    if none_match(&headers, &etag) {
        return Ok(not_modified(&etag, THUMBNAIL_CACHE_CONTROL));
    }
    let jpeg = state.engine.thumbnail(&record.id, size).await?;
    let mut response = ([(header::CONTENT_TYPE, "image/jpeg")], Body::from(jpeg)).into_response();
    set_validators(response.headers_mut(), &etag, THUMBNAIL_CACHE_CONTROL);
    Ok(response)
}

/// `/proc/self/fd/N`: a name for an open file that reopens it, not the path it was found by.
fn opened_file_path(file: &std::fs::File) -> std::path::PathBuf {
    use std::os::fd::AsRawFd;
    std::path::PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

/// A strong ETag for a file. While its size and modification time are those recorded at
/// ingest, its content hash names its bytes; once it changed on disk (not yet re-ingested) the
/// size and modification time do, as most web servers tag files.
fn file_etag(file: &ImageFile) -> String {
    if file.as_indexed {
        format!("\"{}\"", file.record.content_hash)
    } else {
        format!("\"{:x}-{:x}\"", file.len, file.modified_nanos.unwrap_or_default())
    }
}

/// The media type from the file's extension, or else from the format found at ingest. Only
/// image types are taken from the extension: an image saved as `page.html` must not be served
/// as HTML from our origin.
///
/// HEIF and RAW types come from our own table first (`SourceFormat::media_type`), so that every
/// RAW container gets its usual `image/x-...` type whatever `mime_guess` knows.
fn media_type(file: &ImageFile) -> mime_guess::Mime {
    let image = |m: &mime_guess::Mime| m.type_() == mime_guess::mime::IMAGE;
    let ours = |ext: &str| {
        SourceFormat::from_extension(ext).and_then(SourceFormat::media_type).and_then(|t| t.parse::<mime_guess::Mime>().ok()).filter(image)
    };
    let extension = file.path.extension().and_then(|e| e.to_str()).unwrap_or_default();
    ours(extension)
        .or_else(|| mime_guess::from_path(&file.path).first().filter(image))
        .or_else(|| ours(&file.record.format))
        .or_else(|| mime_guess::from_ext(&file.record.format).first().filter(image))
        .unwrap_or(mime_guess::mime::APPLICATION_OCTET_STREAM)
}

/// True when `If-None-Match` is `*` or lists `etag` (weak comparison, RFC 9110 §13.1.2).
fn none_match(headers: &HeaderMap, etag: &str) -> bool {
    let opaque = |tag: &str| tag.trim().trim_start_matches("W/").to_string();
    let ours = opaque(etag);
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| tag.trim() == "*" || opaque(tag) == ours)
}

fn not_modified(etag: &str, cache_control: &'static str) -> Response {
    let mut response = StatusCode::NOT_MODIFIED.into_response();
    set_validators(response.headers_mut(), etag, cache_control);
    response
}

fn set_validators(headers: &mut HeaderMap, etag: &str, cache_control: &'static str) {
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache_control));
    // Browsers must trust our Content-Type rather than guess one from the bytes.
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_lists_star_and_weak_tags() {
        let mut headers = HeaderMap::new();
        assert!(!none_match(&headers, "\"a\""));
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"b\", W/\"a\""));
        assert!(none_match(&headers, "\"a\""));
        assert!(!none_match(&headers, "\"c\""));
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(none_match(&headers, "\"c\""));
    }
}
