//! The hub <-> tenant wire protocol.
