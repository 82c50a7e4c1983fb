//! `tenant-agent`: the library behind the per-VPS daemon and its command line.
//!
//! The binary (`src/main.rs`) only parses arguments and maps errors to exit codes; everything
//! it runs lives here so that tests drive the same code.

pub mod classify_cmd;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod egress;
pub mod exec;
pub mod gate;
pub mod hub_client;
pub mod install;
pub mod layout;
pub mod policy_files;
pub mod proxy;
pub mod runtime;
pub mod secrets_cmd;
pub mod statedb;
pub mod status_cmd;
pub mod supervisor;
pub mod usage;
pub mod vault;
