//! The hub: accounts, tenant enrollment, the fleet, signed policy bundles and the approval
//! inbox. The binary (`main.rs`) only parses arguments; everything is here so tests drive it.

pub mod accounts;
pub mod admin;
pub mod app;
pub mod approvals;
pub mod billing;
pub mod clock;
pub mod config;
pub mod devices;
pub mod error;
pub mod fleet;
pub mod jobs;
pub mod keys;
pub mod orders;
pub mod owner_app;
pub mod owner_routes;
pub mod policies;
pub mod provision;
pub mod push;
pub mod releases;
pub mod server;
pub mod store;
pub mod usage;
