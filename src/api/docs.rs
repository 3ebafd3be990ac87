//! OpenAPI description of the API and the interactive docs page (Swagger UI, served from the
//! binary: no CDN).

use axum::http::Method;
use axum::Router;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::header::Header;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{
    AdditionalProperties, AllOfBuilder, AnyOfBuilder, KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, SchemaType,
};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, Object, Ref, RefOr, Required, Response, ResponseBuilder, Type};
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use super::access::{guards_cross_site, route_needs, Need};
use super::security::{HostPolicy, Security};
use super::{dto, error, files, handlers, AppState};
use crate::auth::Scope;

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
        handlers::delete_job,
        handlers::generations,
        handlers::reindex,
        handlers::rollback,
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
        dto::ReembedInfo,
        dto::ReindexRequest,
        dto::PrecisionName,
        dto::GenerationInfo,
        dto::GenerationsInfo,
        dto::ReindexStarted,
        dto::ImageList,
        dto::DeletedImage,
        dto::UploadResult,
        dto::UploadResponse,
        dto::IngestDirectoryRequest,
        dto::JobInfo,
        dto::FailureInfo,
        dto::JobList,
        dto::DeletedJob,
        error::ErrorBody,
        error::ErrorDetail,
    ))
)]
pub struct ApiDoc;

/// What the served description depends on: the settings the access, rate-limit and host
/// layers enforce. A server without keys answers protected routes anonymously, one with keys
/// answers 401 without one, so no single static document can be exact for both; the server
/// describes itself as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocSettings {
    /// Protected routes need a key (a key file or `VQ_API_KEY`).
    pub keys_required: bool,
    pub metrics_need_key: bool,
    /// `--rate-limit` is set: protected routes may answer 429.
    pub rate_limited: bool,
    /// Only listed `Host` names are answered (421 for others); false with `--allowed-hosts '*'`.
    pub hosts_checked: bool,
}

impl DocSettings {
    pub fn of(security: &Security) -> Self {
        Self {
            keys_required: security.access.keys_required(),
            metrics_need_key: security.access.metrics_need_key(),
            rate_limited: security.rate.is_some(),
            hosts_checked: *security.hosts != HostPolicy::Any,
        }
    }
}

/// The OpenAPI document of a server configured as `settings`.
pub fn describe(settings: DocSettings) -> utoipa::openapi::OpenApi {
    let mut spec = ApiDoc::openapi();
    describe_uploads(&mut spec);
    describe_one_search_subject(&mut spec);
    describe_access(&mut spec, settings);
    describe_common_answers(&mut spec, settings);
    spec
}

pub fn routes(settings: DocSettings) -> Router<AppState> {
    Router::new().merge(SwaggerUi::new("/docs").url("/openapi.json", describe(settings)))
}

fn for_each_operation(spec: &mut utoipa::openapi::OpenApi, mut visit: impl FnMut(&str, &Method, &mut Operation)) {
    for (path, item) in spec.paths.paths.iter_mut() {
        let operations = [
            (Method::GET, &mut item.get),
            (Method::POST, &mut item.post),
            (Method::DELETE, &mut item.delete),
            (Method::PUT, &mut item.put),
            (Method::PATCH, &mut item.patch),
            (Method::HEAD, &mut item.head),
        ];
        for (method, operation) in operations {
            if let Some(operation) = operation.as_mut() {
                visit(path, &method, operation);
            }
        }
    }
}

fn error(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content("application/json", Content::new(Some(Ref::from_schema_name("ErrorBody"))))
        .build()
}

fn integer_header() -> Header {
    Header::new(Object::with_type(Type::Integer))
}

/// Adds `status` unless the handler documented it (its description is the more precise one).
fn answer(operation: &mut Operation, status: &str, response: Response) {
    operation.responses.responses.entry(status.into()).or_insert_with(|| response.into());
}

/// Appends `more` to a status the handler documented (a 403 for a path outside the image roots
/// and one for a missing scope share the status), or adds it.
fn answer_also(operation: &mut Operation, status: &str, more: &str) {
    match operation.responses.responses.get_mut(status) {
        Some(RefOr::T(existing)) => existing.description = format!("{}; or: {more}", existing.description),
        _ => answer(operation, status, error(more)),
    }
}

/// Access control, from the same table the guard enforces ([`route_needs`], and
/// [`guards_cross_site`] for the cross-site request guard): the security schemes, each protected
/// operation's requirement, and the 401, 403 and 429 answers the guard and the rate limit give.
fn describe_access(spec: &mut utoipa::openapi::OpenApi, settings: DocSettings) {
    let components = spec.components.get_or_insert_with(Default::default);
    if settings.keys_required {
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.description =
            Some("An API key (`visionquery keys add`, or VQ_API_KEY); scopes: read, write (implies read), admin (implies write).".into());
        components.add_security_scheme(BEARER, SecurityScheme::Http(bearer));
    } else {
        components.add_security_scheme(
            SAME_ORIGIN,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Requested-With",
                "This server has no API keys: requests that change state must carry `X-Requested-With: visionquery`, \
                 which a foreign web page cannot send without a CORS preflight (refused unless its origin is listed).",
            ))),
        );
    }
    for_each_operation(spec, |path, method, operation| {
        if let Need::Scope(scope) = route_needs(method, path, settings.metrics_need_key) {
            protect(operation, method, scope, settings);
        }
    });
}

fn protect(operation: &mut Operation, method: &Method, scope: Scope, settings: DocSettings) {
    if settings.keys_required {
        operation.security = Some(vec![SecurityRequirement::new(BEARER, [scope.as_str()])]);
        let mut unauthorized =
            error("No API key, an unknown one, or an `Authorization` header that is not `Bearer <key>` (`unauthorized`)");
        unauthorized.headers.insert("WWW-Authenticate".into(), Header::new(Object::with_type(Type::String)));
        answer(operation, "401", unauthorized);
        if scope > Scope::Read {
            // Every key has at least `read`: only routes needing more can refuse a key's scope.
            answer_also(operation, "403", &format!("The key's scope is smaller than `{scope}` (`insufficient_scope`)"));
        }
    } else {
        // Anonymous callers may do everything; a key cannot be checked against an empty key ring.
        answer(operation, "401", error("An `Authorization` header was sent, but this server has no API keys (`unauthorized`)"));
        if guards_cross_site(method, scope) {
            operation.security = Some(vec![SecurityRequirement::new(SAME_ORIGIN, Vec::<String>::new())]);
            answer_also(operation, "403", "`X-Requested-With: visionquery` is missing (`missing_csrf_header`)");
        }
    }
    if settings.rate_limited {
        let mut limited = error("Over the rate limit (`rate_limited`), with `Retry-After` in seconds");
        limited.headers.insert("Retry-After".into(), integer_header());
        answer(operation, "429", limited);
    }
}

/// Answers that follow from a route's shape and the layers around it rather than from its
/// handler: how a JSON body or multipart upload or query string is refused, the deadline, the
/// host check and faults. Statuses a handler documents keep its description.
fn describe_common_answers(spec: &mut utoipa::openapi::OpenApi, settings: DocSettings) {
    for_each_operation(spec, |path, _method, operation| {
        let body_types: Vec<String> = operation.request_body.as_ref().map(|b| b.content.keys().cloned().collect()).unwrap_or_default();
        if body_types.iter().any(|t| t == "application/json") {
            answer(operation, "400", error("The body is not valid JSON (`malformed_json`)"));
            answer(operation, "413", error("The body is over the JSON size limit (`payload_too_large`)"));
            answer(operation, "415", error("The body is not `Content-Type: application/json` (`unsupported_media_type`)"));
            answer(operation, "422", error("The JSON does not match the schema: a missing, unknown or mistyped field (`invalid_request`)"));
        }
        if body_types.iter().any(|t| t == "multipart/form-data") {
            answer(operation, "400", error("The multipart body is malformed (`invalid_request`)"));
            answer(operation, "413", error("The upload is over the size limit (`payload_too_large`), or carries more parts than `--max-upload-parts` (`too_many_parts`)"));
            answer(operation, "415", error("The body is not `multipart/form-data` with a boundary (`unsupported_media_type`)"));
        }
        let has_query = operation.parameters.iter().flatten().any(|p| p.parameter_in == ParameterIn::Query);
        if has_query {
            answer(operation, "400", error("A query parameter is unknown or not of its type (`invalid_request`)"));
        }
        if !WITHOUT_DEADLINE.contains(&path) {
            let mut unavailable = error(
                "The request deadline passed (`timeout`), or the index database cannot be reached (`store_unavailable`); with `Retry-After`",
            );
            unavailable.headers.insert("Retry-After".into(), integer_header());
            answer(operation, "503", unavailable);
        }
        if settings.hosts_checked {
            answer(operation, "421", error("The `Host` header is not an allowed host name (`host_not_allowed`)"));
        }
        answer(operation, "500", error("A fault on the server's side (`internal`, `index_error`, ...), logged with the request id"));
    });
}

/// The multipart bodies, built by hand: the derive cannot say "a part named `files` or `file`"
/// (an `anyOf` of `required` lists) nor describe a part's bytes without a JSON type.
///
/// In a multipart body one part and a list of one are the same bytes, and every part's bytes
/// are a file's, so an upload's parts carry no JSON type: any bytes are a file (not an image:
/// an `error` entry in the answer). A search takes exactly one image part.
fn describe_uploads(spec: &mut utoipa::openapi::OpenApi) {
    let uploads = [
        ("/ingest/upload", "One or more images, each a part named `files` (or `file`); a part of another name is refused (`unexpected_part`, 422), the files before it being indexed already", upload_form()),
        ("/search/image", "One image in a part named `file` (or `files`); another part is refused (`unexpected_part` or `too_many_files`, 422)", search_form()),
    ];
    for (path, description, form) in uploads {
        let Some(operation) = spec.paths.paths.get_mut(path).and_then(|item| item.post.as_mut()) else { continue };
        operation.request_body = Some(
            RequestBodyBuilder::new()
                .description(Some(description))
                .content("multipart/form-data", Content::new(Some(form)))
                .required(Some(Required::True))
                .build(),
        );
    }
}

/// Parts named `files` or `file`, any number of each (at least one in all), each any bytes.
fn upload_form() -> Schema {
    // `minItems` without a type: a list of parts is not empty, one part is any bytes. utoipa's
    // `Object` has no field for a keyword of any type; its extensions are written out flat.
    let parts = || {
        let mut any_bytes =
            ObjectBuilder::new().schema_type(SchemaType::AnyValue).description(Some("One or more image files (any bytes)")).build();
        any_bytes.extensions = Some(Extensions::from_iter([("minItems", 1)]));
        any_bytes
    };
    one_of_parts(parts, false)
}

/// Exactly one part, named `file` or `files`, of binary content.
fn search_form() -> Schema {
    let binary = || ObjectBuilder::new().schema_type(Type::String).format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary))).build();
    one_of_parts(binary, true)
}

/// An object of the parts `files` and `file` and no other, with at least one of them (`exactly`:
/// only one).
fn one_of_parts(part: impl Fn() -> Object, exactly: bool) -> Schema {
    let fields = ObjectBuilder::new()
        .property("files", part())
        .property("file", part())
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    let given = |name: &str| ObjectBuilder::new().required(name);
    let choice: Schema = if exactly {
        OneOfBuilder::new().item(given("files")).item(given("file")).into()
    } else {
        AnyOfBuilder::new().item(given("files")).item(given("file")).into()
    };
    AllOfBuilder::new().item(fields).item(choice).into()
}

/// A search by a text or by an image: exactly one of `query` and `image_id` is a string (the
/// other absent or null), in a request and in each object term. The derive cannot say "exactly
/// one of"; the handlers refuse both (422) and neither (422).
fn describe_one_search_subject(spec: &mut utoipa::openapi::OpenApi) {
    let Some(components) = spec.components.as_mut() else { return };
    for name in ["SearchRequest", "QueryTermObject"] {
        let Some(RefOr::T(schema)) = components.schemas.get_mut(name) else { continue };
        let given = |field: &str| ObjectBuilder::new().property(field, ObjectBuilder::new().schema_type(Type::String)).required(field);
        let subject = OneOfBuilder::new().item(given("query")).item(given("image_id"));
        *schema = AllOfBuilder::new().item(schema.clone()).item(subject).into();
    }
}

/// Routes that answer from memory at once, outside the request deadline (`api::router`).
pub(super) const WITHOUT_DEADLINE: [&str; 3] = ["/health", "/ready", "/metrics"];

/// Security scheme names.
const BEARER: &str = "bearer";
const SAME_ORIGIN: &str = "same_origin_header";
