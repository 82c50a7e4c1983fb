//! The release artifacts the hub serves to new appliances: today the `tenant-agent` binary,
//! fetched by the appliance's first boot and checked against the SHA-256 its user data pins.
//! The hash is taken once at start; the file is streamed from disk per request, so replacing
//! the file means restarting the hub (an appliance given the old hash refuses the new bytes,
//! which fails closed).

use std::path::{Path, PathBuf};

use ring::digest;
use tokio::io::AsyncReadExt as _;

/// A served artifact.
#[derive(Debug, Clone)]
pub struct Release {
    pub path: PathBuf,
    /// Lower-case hex.
    pub sha256: String,
    pub len: u64,
}

/// The artifact could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the release artifact {path}: {source}")]
pub struct ReleaseError {
    pub path: String,
    #[source]
    pub source: std::io::Error,
}

impl Release {
    /// Hashes `path`.
    pub async fn load(path: &Path) -> Result<Release, ReleaseError> {
        let err = |source| ReleaseError {
            path: path.display().to_string(),
            source,
        };
        let mut file = tokio::fs::File::open(path).await.map_err(err)?;
        let mut ctx = digest::Context::new(&digest::SHA256);
        let mut buf = vec![0u8; 1 << 20];
        let mut len = 0u64;
        loop {
            let n = file.read(&mut buf).await.map_err(err)?;
            if n == 0 {
                break;
            }
            ctx.update(buf.get(..n).unwrap_or_default());
            len += n as u64;
        }
        Ok(Release {
            path: path.to_owned(),
            sha256: hex::encode(ctx.finish()),
            len,
        })
    }

    /// The binary next to the running `hub`, if there is one (a release install puts both in
    /// one directory).
    pub fn default_agent_path() -> Option<PathBuf> {
        let exe = std::env::current_exe().ok()?;
        let path = exe.parent()?.join("tenant-agent");
        path.is_file().then_some(path)
    }
}
