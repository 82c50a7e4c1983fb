//! The default policy bundle, compiled into the binary from `policies/default/*.toml`.

include!(concat!(env!("OUT_DIR"), "/embedded_policies.rs"));
