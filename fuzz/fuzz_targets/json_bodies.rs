//! Any bytes as the JSON body of the routes that take one (search, ingest an image, ingest a
//! folder), through the whole app: extraction, validation, filters, the engine and the store.
//! Input: one byte choosing the route and the `Content-Type`, then the body.
#![no_main]

use axum::body::Body;
use axum::http::{header, Request};
use libfuzzer_sys::fuzz_target;
use visionquery_fuzz::{check, forget_indexed, App};

const ROUTES: [&str; 3] = ["/search", "/ingest/image", "/ingest/directory"];
const CONTENT_TYPES: [Option<&str>; 4] = [Some("application/json"), Some("application/json; charset=utf-8"), None, Some("text/plain")];

fuzz_target!(|data: &[u8]| {
    let Some((&choice, body)) = data.split_first() else { return };
    let route = ROUTES[usize::from(choice) % ROUTES.len()];
    let content_type = CONTENT_TYPES[usize::from(choice) / ROUTES.len() % CONTENT_TYPES.len()];
    let mut request = Request::post(route);
    if let Some(content_type) = content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    let app = App::get();
    let answer = app.send(request.body(Body::from(body.to_vec())).expect("a request"));
    check(&format!("POST {route}"), &answer);
    if route == "/ingest/image" {
        forget_indexed(app, &answer);
    }
});
