//! The analysts' page: `GET /ui/` and every deep link under it, served from assets compiled into
//! the binary (hand-written HTML, CSS and JavaScript; nothing to build). The page reads the same
//! `/v1` API that scripts use, with the read token the analyst types in, kept for the tab only.
//!
//! Chat text, names, file names and links are written by meeting participants. The page builds
//! everything they wrote as text nodes (see `assets/app.js`), and every answer here carries a
//! Content-Security-Policy that would stop an injected script anyway: scripts, styles and
//! connections from this origin only, no inline script or style, pictures from `https:` and this
//! origin, no framing.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");
const ICON: &str = include_str!("assets/favicon.svg");

/// The policy every `/ui` answer carries.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src https: 'self'; connect-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub fn configure(cfg: &mut web::ServiceConfig) {
    use actix_web::http::Method;
    // Every answer under /ui (redirects, errors and other methods' JSON 405 too) carries the
    // page's headers.
    cfg.service(
        // A browser pointed at the service's address finds the page.
        crate::api::only("/", Method::GET, || async {
            HttpResponse::Found()
                .insert_header((header::LOCATION, "/ui/"))
                .finish()
        })
        .wrap(page_headers()),
    )
    .service(
        crate::api::only("/ui", Method::GET, || async {
            HttpResponse::PermanentRedirect()
                .insert_header((header::LOCATION, "/ui/"))
                .finish()
        })
        .wrap(page_headers()),
    )
    .service(crate::api::only("/ui/{tail:.*}", Method::GET, page).wrap(page_headers()));
}

fn page_headers() -> actix_web::middleware::DefaultHeaders {
    PAGE_HEADERS.iter().fold(
        actix_web::middleware::DefaultHeaders::new(),
        |headers, h| headers.add(h.clone()),
    )
}

/// The headers of every `/ui` answer.
const PAGE_HEADERS: [(header::HeaderName, &str); 4] = [
    (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::X_FRAME_OPTIONS, "DENY"),
];

/// An asset by name, or the page itself for every other path (the page routes deep links).
async fn page(request: HttpRequest) -> HttpResponse {
    let tail = request.match_info().get("tail").unwrap_or("");
    let (body, content_type) = match tail {
        "assets/app.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "assets/app.css" => (STYLE, "text/css; charset=utf-8"),
        "assets/favicon.svg" => (ICON, "image/svg+xml"),
        t if t.starts_with("assets/") => {
            return HttpResponse::NotFound().json(serde_json::json!({
                "error": "not_found", "message": "no such asset"
            }))
        }
        _ => (INDEX, "text/html; charset=utf-8"),
    };
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
        .body(body)
}
