//! The runtime's proxy token (the "ghost key" its SDKs send as their API key).

use crate::layout::Layout;

use super::ProxyError;

/// File (in the state dir) holding the runtime's proxy token.
pub const TOKEN_FILE: &str = "proxy-token";

/// Returns the runtime's proxy token, creating it (random, 0600) on first use.
pub fn load_or_create_token(layout: &Layout) -> Result<String, ProxyError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = layout.state_dir.join(TOKEN_FILE);
    let err = |source| ProxyError::Token {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(token) if !token.trim().is_empty() => return Ok(token.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    layout.ensure_state_dir().map_err(err)?;
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| err(std::io::Error::other("no system randomness")))?;
    let token = format!(
        "tap_{}",
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
    );
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    file.write_all(format!("{token}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(err)?;
    std::fs::rename(&tmp, &path).map_err(err)?;
    Ok(token)
}
