//! The customer's approval app: static files compiled into the binary and served under `/app/`
//! with a strict content security policy (no inline script, same-origin only).

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

const FILES: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../app/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../app/app.js"),
    ),
    (
        "owner.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../app/owner.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../app/app.css"),
    ),
    (
        "sw.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../app/sw.js"),
    ),
    (
        "manifest.webmanifest",
        "application/manifest+json",
        include_bytes!("../app/manifest.webmanifest"),
    ),
    (
        "icon.svg",
        "image/svg+xml",
        include_bytes!("../app/icon.svg"),
    ),
    (
        "icon-192.png",
        "image/png",
        include_bytes!("../app/icon-192.png"),
    ),
    (
        "icon-512.png",
        "image/png",
        include_bytes!("../app/icon-512.png"),
    ),
];

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; worker-src 'self'; manifest-src 'self'; frame-ancestors 'none'; \
    base-uri 'none'; form-action 'self'";

/// The app's routes (merged into the hub's router).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/app/") }))
        .route("/app", get(|| async { Redirect::to("/app/") }))
        .route("/app/", get(|| async { file("index.html") }))
        .route(
            "/app/{name}",
            get(|Path(name): Path<String>| async move { file(&name) }),
        )
}

fn file(name: &str) -> Response {
    let Some((_, mime, bytes)) = FILES.iter().find(|(n, _, _)| *n == name) else {
        return crate::error::HubError::NotFound(format!("/app/{name}")).into_response();
    };
    let mut resp = (StatusCode::OK, *bytes).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // The shell must not be served stale after an upgrade.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

#[cfg(test)]
mod tests {
    use super::FILES;

    /// The page's scripts share one global scope: a name declared at the top of two of them
    /// either stops the second from loading (`const`, `let`) or silently replaces the first's
    /// (`function`). Both happened once when two features met.
    #[test]
    fn the_scripts_declare_no_top_level_name_twice() {
        let mut seen: std::collections::BTreeMap<String, &str> = std::collections::BTreeMap::new();
        for (file, _, bytes) in FILES
            .iter()
            .filter(|(f, _, _)| f.ends_with(".js") && *f != "sw.js")
        {
            let text = String::from_utf8_lossy(bytes);
            for line in text.lines() {
                let rest = line.strip_prefix("async ").unwrap_or(line);
                let name = ["function ", "const ", "let ", "var ", "class "]
                    .iter()
                    .find_map(|kw| rest.strip_prefix(kw))
                    .map(|r| {
                        r.chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '$')
                            .collect::<String>()
                    })
                    .filter(|n| !n.is_empty());
                if let Some(name) = name
                    && let Some(first) = seen.insert(name.clone(), file)
                {
                    panic!("{name} is declared at the top of both {first} and {file}");
                }
            }
        }
        assert!(seen.contains_key("ownerRoute") && seen.contains_key("billingRoute"));
    }
}
