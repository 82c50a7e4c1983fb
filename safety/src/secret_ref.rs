//! `SECRET_REF(name)`: how the agent names a secret without ever seeing it.
//!
//! References are resolved only for execution, into the one process that runs an approved
//! action; everything the agent or the LLM sees keeps the reference. An unknown or malformed
//! reference is an error, never an empty string or the literal text.

/// The reference syntax's opening.
pub const PREFIX: &str = "SECRET_REF(";

/// How the names of the shell variables that hold resolved values start (the daemon's
/// rewrite turns `SECRET_REF(name)` into `"${__ta_secret_0}"`). A command that names such a
/// variable itself reads or replaces a value outside every binding; the classifier refuses it.
pub const INTERNAL_VARIABLE_PREFIX: &str = "__ta_";

/// Whether a shell variable name is one the daemon uses for resolved values.
pub fn is_internal_variable(name: &str) -> bool {
    name.starts_with(INTERNAL_VARIABLE_PREFIX)
}

/// A reference could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretRefError {
    /// No secret of that name exists.
    #[error("unknown secret reference `SECRET_REF({0})`")]
    Unknown(String),
    /// The name between the parentheses is not a valid secret name.
    #[error("invalid secret reference `{0}` (names are 1 to 64 of a-z, 0-9, `_`, `.` and `-`)")]
    Invalid(String),
}

/// Whether `name` is a valid secret name: `[a-z0-9_.-]{1,64}`.
pub fn is_valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
        })
}

/// Every reference in `text`, in order (a name may appear more than once).
pub fn references(text: &str) -> Result<Vec<&str>, SecretRefError> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(PREFIX) {
        let after = &rest[at + PREFIX.len()..];
        let Some(close) = after.find(')') else {
            return Err(SecretRefError::Invalid(super::classify::truncate(
                &rest[at..],
                80,
            )));
        };
        let name = &after[..close];
        if !is_valid_name(name) {
            return Err(SecretRefError::Invalid(format!("{PREFIX}{name})")));
        }
        out.push(name);
        rest = &after[close + 1..];
    }
    Ok(out)
}

/// Replaces every reference in `text` with its value from `lookup`.
pub fn resolve<'v>(
    text: &str,
    lookup: impl Fn(&str) -> Option<&'v str>,
) -> Result<String, SecretRefError> {
    let names = references(text)?;
    if names.is_empty() {
        return Ok(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    for name in names {
        let token = format!("{PREFIX}{name})");
        let at = rest.find(&token).unwrap_or(rest.len());
        out.push_str(&rest[..at]);
        let value = lookup(name).ok_or_else(|| SecretRefError::Unknown(name.to_owned()))?;
        out.push_str(value);
        rest = rest.get(at + token.len()..).unwrap_or("");
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<&'static str> {
        match name {
            "db_password" => Some("s3cr3t-value"),
            "api.key" => Some("k-123456789"),
            _ => None,
        }
    }

    #[track_caller]
    fn check(input: &str, expected: Result<&str, SecretRefError>) {
        assert_eq!(
            resolve(input, lookup).as_deref().map_err(Clone::clone),
            expected,
            "{input}"
        );
    }

    #[test]
    fn resolution() {
        check("no refs", Ok("no refs"));
        check(
            "PGPASSWORD=SECRET_REF(db_password)",
            Ok("PGPASSWORD=s3cr3t-value"),
        );
        check(
            "a SECRET_REF(db_password) b SECRET_REF(api.key) SECRET_REF(db_password)",
            Ok("a s3cr3t-value b k-123456789 s3cr3t-value"),
        );
        check(
            "SECRET_REF(missing)",
            Err(SecretRefError::Unknown("missing".into())),
        );
        check(
            "SECRET_REF(Bad Name)",
            Err(SecretRefError::Invalid("SECRET_REF(Bad Name)".into())),
        );
        check(
            "SECRET_REF(unclosed",
            Err(SecretRefError::Invalid("SECRET_REF(unclosed".into())),
        );
        check(
            "SECRET_REF()",
            Err(SecretRefError::Invalid("SECRET_REF()".into())),
        );
    }

    #[test]
    fn names() {
        assert!(is_valid_name("openai_api_key"));
        assert!(is_valid_name("a.b-c_9"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("Upper"));
        assert!(!is_valid_name(&"a".repeat(65)));
        assert!(!is_valid_name("a b"));
    }
}
