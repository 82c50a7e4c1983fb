//! Embeds every `policies/default/*.toml` file, so adding a policy file needs no code change.

use std::fmt::Write as _;
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/default");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".toml"))
        .collect();
    names.sort();
    let mut out = String::from(
        "/// `(file name, contents)` of every file of the default bundle, sorted by name.\n\
         pub(crate) const DEFAULT_POLICY_FILES: &[(&str, &str)] = &[\n",
    );
    for name in &names {
        let path = dir.join(name);
        println!("cargo:rerun-if-changed={}", path.display());
        let _ = writeln!(
            out,
            "    ({name:?}, include_str!({:?})),",
            path.display().to_string()
        );
    }
    out.push_str("];\n");
    let out_dir = std::env::var("OUT_DIR").map_err(|_| "OUT_DIR is not set")?;
    std::fs::write(Path::new(&out_dir).join("embedded_policies.rs"), out)
        .map_err(|e| format!("cannot write embedded_policies.rs: {e}"))?;
    Ok(())
}
