//! The secrets the proxy needs (provider keys and the redactor of every vault secret), as of
//! the last vault read, and the watcher that reloads them when `vault.db` changes.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use safety::Redactor;
use safety::redact::PatternPack;
use tokio::sync::watch;

use super::ProxyError;
use crate::layout::Layout;
use crate::vault::{SecretValue, Vault};

/// The secrets the proxy needs, as of the last vault read.
pub(super) struct Snapshot {
    /// Provider keys by secret name.
    pub(super) keys: HashMap<String, SecretValue>,
    pub(super) redactor: Arc<Redactor>,
}

/// The current snapshot, replaced whole by the watcher.
pub(super) type Shared = Arc<RwLock<Arc<Snapshot>>>;

impl Snapshot {
    pub(super) fn load(
        layout: &Layout,
        pack: &Arc<PatternPack>,
        needed: &[String],
    ) -> Result<Self, ProxyError> {
        let vault = Vault::open(layout)?;
        let all = vault.all()?;
        let redactor = Arc::new(crate::secrets_cmd::redactor_for(&all, pack.clone())?);
        let keys = all
            .into_iter()
            .filter(|(name, _)| needed.contains(name))
            .collect();
        Ok(Snapshot { keys, redactor })
    }
}

/// The redactor of the proxy's current vault snapshot: every vault secret (in every encoding)
/// and the credential pattern pack, reloaded within a second of a vault change.
#[derive(Clone)]
pub struct LiveRedactor(pub(super) Shared);

impl std::fmt::Debug for LiveRedactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiveRedactor")
    }
}

impl LiveRedactor {
    pub fn current(&self) -> Arc<Redactor> {
        match self.0.read() {
            Ok(guard) => guard.redactor.clone(),
            Err(poisoned) => poisoned.into_inner().redactor.clone(),
        }
    }
}

/// Reloads the snapshot when the vault file changes (checked every second).
pub(super) async fn watch_vault(
    shared: Shared,
    layout: Layout,
    pack: Arc<PatternPack>,
    needed: Vec<String>,
    mut shutdown: watch::Receiver<bool>,
) {
    let stamp = |path: &std::path::Path| -> Option<(SystemTime, u64)> {
        let m = std::fs::metadata(path).ok()?;
        Some((m.modified().ok()?, m.len()))
    };
    let path = layout.vault_db();
    let mut last = stamp(&path);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
        let now = stamp(&path);
        if now == last {
            continue;
        }
        last = now;
        let (layout, pack, needed) = (layout.clone(), pack.clone(), needed.clone());
        match tokio::task::spawn_blocking(move || Snapshot::load(&layout, &pack, &needed)).await {
            Ok(Ok(snapshot)) => {
                if let Ok(mut guard) = shared.write() {
                    *guard = Arc::new(snapshot);
                }
                tracing::info!("vault changed: keys and redaction reloaded");
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "vault changed but cannot be read; keeping the previous keys")
            }
            Err(e) => tracing::error!(error = %e, "vault reload task failed"),
        }
    }
}
