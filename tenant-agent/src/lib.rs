//! tenant-agent
