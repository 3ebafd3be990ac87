//! OpenAPI description of the API and the interactive docs page (Swagger UI, served from the
//! binary: no CDN).

use axum::Router;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use super::{dto, error, handlers, AppState};

#[derive(OpenApi)]
#[openapi(
    info(title = "VisionQuery", description = "Self-hosted text-to-image semantic search with CLIP"),
    paths(
        handlers::health,
        handlers::ready,
        handlers::ingest_image,
        handlers::search,
        handlers::image_info,
        handlers::image_file,
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
        error::ErrorBody,
        error::ErrorDetail,
    ))
)]
pub struct ApiDoc;

pub fn routes() -> Router<AppState> {
    Router::new().merge(SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
}
