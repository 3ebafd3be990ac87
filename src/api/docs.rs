//! OpenAPI description of the API and the interactive docs page (Swagger UI, served from the
//! binary: no CDN).

use axum::Router;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use super::{dto, error, files, handlers, AppState};

#[derive(OpenApi)]
#[openapi(
    info(title = "VisionQuery", description = "Self-hosted text-to-image semantic search with CLIP"),
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

pub fn routes() -> Router<AppState> {
    Router::new().merge(SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
}
