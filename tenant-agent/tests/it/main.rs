//! tenant-agent's integration tests: one binary, one module per area.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cli;
mod daemon;
mod egress;
mod exec;
mod hub;
mod install;
mod openclaw;
mod owner_app;
mod proc_isolation;
mod proxy;
mod runtime;
mod sdk;
mod secrets;
mod statedb;
mod units;
