//! OpenAPI description of the API and the interactive docs page (Swagger UI, served from the
//! binary: no CDN).

use axum::http::Method;
use axum::Router;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, Ref, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use super::access::{route_needs, Need};
use super::{dto, error, files, handlers, AppState};
use crate::auth::Scope;

#[derive(OpenApi)]
#[openapi(
    info(title = "VisionQuery", description = "Self-hosted text-to-image semantic search with CLIP"),
    modifiers(&AccessDocs),
    paths(
        handlers::health,
        handlers::ready,
        handlers::ingest_image,
        handlers::search,
        handlers::image_info,
        files::image_file,
        handlers::list_images,
        handlers::duplicates,
        handlers::delete_image,
        files::image_thumbnail,
        handlers::ingest_upload,
        handlers::search_image,
        handlers::ingest_directory,
        handlers::list_jobs,
        handlers::get_job,
        handlers::cancel_job,
        handlers::metrics,
    ),
    components(schemas(
        dto::IngestImageRequest,
        dto::IngestImageResponse,
        dto::SearchRequest,
        dto::SearchResponse,
        dto::SearchResult,
        dto::ImageInfo,
        dto::HealthResponse,
        dto::ModelStatus,
        dto::IndexStatus,
        dto::ImageList,
        dto::DeletedImage,
        dto::UploadResult,
        dto::UploadResponse,
        dto::IngestDirectoryRequest,
        dto::JobInfo,
        dto::FailureInfo,
        dto::JobList,
        error::ErrorBody,
        error::ErrorDetail,
    ))
)]
pub struct ApiDoc;

/// Documents access control from the same table the guard enforces ([`route_needs`]): the
/// bearer scheme, and on every protected operation its security requirement and the 401, 403
/// and 429 answers, so the description cannot drift from what the server does.
struct AccessDocs;

impl Modify for AccessDocs {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.description = Some(
            "An API key (`visionquery keys add`, or VQ_API_KEY) when the server has keys; scopes: read, write (implies read), admin."
                .into(),
        );
        components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                (Method::GET, &mut item.get),
                (Method::POST, &mut item.post),
                (Method::DELETE, &mut item.delete),
                (Method::PUT, &mut item.put),
                (Method::HEAD, &mut item.head),
            ];
            for (method, operation) in operations {
                if let (Some(operation), Need::Scope(scope)) = (operation.as_mut(), route_needs(&method, path, false)) {
                    protect(operation, scope);
                }
            }
        }
    }
}

fn protect(operation: &mut Operation, scope: Scope) {
    operation.security = Some(vec![SecurityRequirement::new("bearer", [scope.as_str()])]);
    let responses = &mut operation.responses.responses;
    let error = |description: &str| -> Response {
        ResponseBuilder::new()
            .description(description)
            .content("application/json", Content::new(Some(Ref::from_schema_name("ErrorBody"))))
            .build()
    };
    responses.insert("401".into(), error("No API key, or an unknown one (`unauthorized`); with `WWW-Authenticate: Bearer`").into());
    let forbidden = if scope > Scope::Read {
        "The key's scope is too small (`insufficient_scope`), or neither a key nor `X-Requested-With: visionquery` was sent with this state change (`missing_csrf_header`)"
    } else {
        "The key's scope is too small (`insufficient_scope`)"
    };
    // Handlers may document their own 403 (a path outside the image roots): keep both.
    match responses.get_mut("403") {
        Some(utoipa::openapi::RefOr::T(existing)) => existing.description = format!("{}; or: {forbidden}", existing.description),
        _ => {
            responses.insert("403".into(), error(forbidden).into());
        }
    }
    let mut limited = error("Over the rate limit (`rate_limited`, with `Retry-After` in seconds); only with --rate-limit");
    limited.headers.insert(
        "Retry-After".into(),
        utoipa::openapi::header::Header::new(utoipa::openapi::Object::with_type(utoipa::openapi::Type::Integer)),
    );
    responses.entry("429".into()).or_insert_with(|| limited.into());
    responses.insert("421".into(), error("The `Host` header is not an allowed host name (`host_not_allowed`)").into());
}

pub fn routes() -> Router<AppState> {
    Router::new().merge(SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
}
