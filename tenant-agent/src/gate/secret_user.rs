//! Who an action that uses a secret runs as: `[gate] secret_user` (default `tenant-secret` on an
//! installed VPS), with the runtime's primary group, so that the runtime's uid can neither read
//! the action's `/proc/PID/environ` nor, under the unit's `ProtectProc=invisible`, see its
//! processes and their `cmdline` at all (see `exec`'s module docs for the files trade-off).
//!
//! Decided once, when the daemon starts. Where no secret user can be had (a development layout
//! without `secret_user`, a daemon that cannot switch users, the default user missing, or a
//! secret user that is the runtime's own) such actions run as the runtime's user, and the daemon
//! says so once. A `secret_user` that was set and does not exist is an error: the operator asked
//! for an isolation the daemon cannot give.

use crate::layout::Layout;
use crate::supervisor::RunAs;

/// The secret user an install creates (`systemd/sysusers.conf`).
pub const DEFAULT_SECRET_USER: &str = "tenant-secret";

/// The configured secret user cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretUserError {
    #[error(
        "[gate] secret_user {0:?} does not exist (create it, e.g. with `tenant-agent install`, or remove the key)"
    )]
    NoSuchUser(String),
    #[error(
        "[gate] secret_user {0:?} is root or the daemon's own user: actions would get the daemon's powers"
    )]
    Privileged(String),
    #[error("cannot look up [gate] secret_user {name:?}: {message}")]
    Lookup { name: String, message: String },
}

/// The uid and gid actions that resolve a secret run as; `None`: as the runtime's user
/// (`runtime`), after one warning.
pub fn resolve(
    layout: &Layout,
    configured: Option<&str>,
    runtime: Option<RunAs>,
) -> Result<Option<RunAs>, SecretUserError> {
    let name = match configured {
        Some(name) => name,
        None if layout.development => {
            tracing::warn!(
                "actions that use a secret run as the runtime's user: no [gate] secret_user in \
                 this development layout, so the runtime's uid can read their children's \
                 command lines in /proc"
            );
            return Ok(None);
        }
        None => DEFAULT_SECRET_USER,
    };
    if !can_switch_users() {
        tracing::warn!(
            secret_user = name,
            "actions that use a secret run as the runtime's user: this daemon cannot switch \
             users (no CAP_SETUID/CAP_SETGID), so the runtime's uid can read their children's \
             command lines in /proc"
        );
        return Ok(None);
    }
    let user = match nix::unistd::User::from_name(name) {
        Ok(Some(user)) => user,
        Ok(None) if configured.is_none() => {
            tracing::warn!(
                secret_user = name,
                "actions that use a secret run as the runtime's user: the user does not exist \
                 (run `tenant-agent install` again to create it)"
            );
            return Ok(None);
        }
        Ok(None) => return Err(SecretUserError::NoSuchUser(name.to_owned())),
        Err(e) => {
            return Err(SecretUserError::Lookup {
                name: name.to_owned(),
                message: e.to_string(),
            });
        }
    };
    let uid = user.uid.as_raw();
    if uid == 0 || uid == nix::unistd::getuid().as_raw() {
        return Err(SecretUserError::Privileged(name.to_owned()));
    }
    if runtime.is_some_and(|r| r.uid == uid) {
        tracing::warn!(
            secret_user = name,
            "actions that use a secret run as the runtime's user: the secret user is the \
             runtime's own, which isolates nothing"
        );
        return Ok(None);
    }
    let gid = runtime.map_or(user.gid.as_raw(), |r| r.gid);
    tracing::info!(
        secret_user = name,
        uid,
        gid,
        "actions that use a secret run as their own user"
    );
    Ok(Some(RunAs { uid, gid }))
}

/// Whether this process may set its uid and gid (root, or the unit's capabilities).
fn can_switch_users() -> bool {
    use caps::{CapSet, Capability};
    [Capability::CAP_SETUID, Capability::CAP_SETGID]
        .into_iter()
        .all(|cap| caps::has_cap(None, CapSet::Effective, cap).unwrap_or(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn development_layouts_fall_back_unless_configured() {
        let layout = Layout::new(Some(std::path::Path::new("/nonexistent/state")));
        assert!(resolve(&layout, None, None).unwrap().is_none());
    }

    #[test]
    fn a_configured_user_is_used_with_the_runtimes_group() {
        if !can_switch_users() {
            // Without CAP_SETUID every configured user falls back (with a warning).
            let layout = Layout::new(Some(std::path::Path::new("/nonexistent/state")));
            assert!(resolve(&layout, Some("daemon"), None).unwrap().is_none());
            return;
        }
        let layout = Layout::new(Some(std::path::Path::new("/nonexistent/state")));
        let runtime = Some(RunAs {
            uid: 65534,
            gid: 65534,
        });
        let daemon = nix::unistd::User::from_name("daemon").unwrap().unwrap();
        assert_eq!(
            resolve(&layout, Some("daemon"), runtime).unwrap(),
            Some(RunAs {
                uid: daemon.uid.as_raw(),
                gid: 65534
            })
        );
        // Without a runtime user: the secret user's own group.
        assert_eq!(
            resolve(&layout, Some("daemon"), None).unwrap(),
            Some(RunAs {
                uid: daemon.uid.as_raw(),
                gid: daemon.gid.as_raw()
            })
        );
        // The runtime's own user isolates nothing: fall back.
        assert!(resolve(&layout, Some("nobody"), runtime).unwrap().is_none());
        assert!(matches!(
            resolve(&layout, Some("root"), runtime),
            Err(SecretUserError::Privileged(_))
        ));
        assert!(matches!(
            resolve(&layout, Some("no-such-user-ta14"), runtime),
            Err(SecretUserError::NoSuchUser(_))
        ));
    }
}
