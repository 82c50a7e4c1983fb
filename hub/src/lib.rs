//! `hub`: the central service. The binary (`src/main.rs`) parses arguments; everything it runs
//! lives here so that tests drive the same code.
//!
//! Today: the service skeleton (`hub serve` with `/healthz`, `/metrics`, `/openapi.json`),
//! the versioned SQLite schema, and the admin commands for accounts, enrollment tokens and the
//! fleet list. Enrollment, signed requests, heartbeats, policy bundles and approvals follow.

pub mod admin;
pub mod config;
pub mod db;
pub mod server;
