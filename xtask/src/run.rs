//! `cargo xtask run`: the hub and a local tenant for development (filled in with the hub).

use std::path::Path;

pub(crate) fn run(_root: &Path, _args: &[String]) -> Result<(), String> {
    Err("`cargo xtask run` starts the hub, which is not built yet".to_owned())
}
