//! Fakes of the paid outside services.
