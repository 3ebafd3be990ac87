//! Any bytes as the multipart body of an upload or an image search, through the whole app:
//! multipart parsing, part names, the streamed upload file, decoding, embedding and the store.
//! Input: one byte choosing the route, then the body (boundary `vqfuzz`).
#![no_main]

use axum::body::Body;
use axum::http::{header, Request};
use libfuzzer_sys::fuzz_target;
use visionquery_fuzz::{check, forget_indexed, App};

const ROUTES: [&str; 2] = ["/ingest/upload", "/search/image?top_k=3"];

fuzz_target!(|data: &[u8]| {
    let Some((&choice, body)) = data.split_first() else { return };
    let route = ROUTES[usize::from(choice) % ROUTES.len()];
    let request = Request::post(route)
        .header(header::CONTENT_TYPE, "multipart/form-data; boundary=vqfuzz")
        .body(Body::from(body.to_vec()))
        .expect("a request");
    let app = App::get();
    let answer = app.send(request);
    check(&format!("POST {route}"), &answer);
    if route == "/ingest/upload" {
        forget_indexed(app, &answer);
    }
});
