//! The configured providers and the pooled TLS client that reaches them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::ProxyError;
use crate::config::{ProviderConfig, ProviderKind, ProxyConfig};

pub(super) type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// One configured provider.
pub(super) struct Provider {
    pub(super) name: String,
    pub(super) kind: ProviderKind,
    /// `scheme://authority` of the upstream.
    pub(super) origin: String,
    /// Path prefix of the upstream base URL, without a trailing `/`.
    pub(super) prefix: String,
    pub(super) key_secret: Option<String>,
    pub(super) client: HttpsClient,
}

/// A provider from its configuration; it shares `shared` unless it trusts a CA of its own.
pub(super) fn provider(
    name: &str,
    p: &ProviderConfig,
    config: &ProxyConfig,
    shared: &HttpsClient,
) -> Result<Provider, ProxyError> {
    let tls_err = |message: String| ProxyError::Tls {
        provider: name.to_owned(),
        message,
    };
    let uri: Uri = p
        .upstream
        .parse()
        .map_err(|e| tls_err(format!("bad upstream URL: {e}")))?;
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(tls_err(
            "the upstream URL needs a scheme and a host".to_owned(),
        ));
    };
    let client = match &p.ca_file {
        Some(ca) => build_client(config, Some(ca), name)?,
        None => shared.clone(),
    };
    Ok(Provider {
        name: name.to_owned(),
        kind: p.kind_for(name),
        origin: format!("{scheme}://{authority}"),
        prefix: uri.path().trim_end_matches('/').to_owned(),
        key_secret: p.key_secret.clone(),
        client,
    })
}

/// A pooled HTTP/1 client over rustls: the system's roots (else webpki-roots), plus `extra_ca`.
pub(super) fn build_client(
    config: &ProxyConfig,
    extra_ca: Option<&PathBuf>,
    provider: &str,
) -> Result<HttpsClient, ProxyError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let tls_err = |message: String| ProxyError::Tls {
        provider: provider.to_owned(),
        message,
    };
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(native.certs);
    if added == 0 {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    if let Some(ca) = extra_ca {
        let certs = CertificateDer::pem_file_iter(ca)
            .map_err(|e| tls_err(format!("ca_file {}: {e}", ca.display())))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| tls_err(format!("ca_file {}: {e}", ca.display())))?;
        if certs.is_empty() {
            return Err(tls_err(format!(
                "ca_file {}: no certificates",
                ca.display()
            )));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| tls_err(format!("ca_file {}: {e}", ca.display())))?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| tls_err(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(config.connect_timeout()));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .build(https))
}

/// An error and its causes, `: `-joined (hyper's own message is only the outermost layer).
pub(super) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}
