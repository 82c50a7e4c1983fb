//! The test kit shared by the hub's and the tenant's tests.
//!
//! - [`pg::PgCluster`]: a real, private PostgreSQL cluster on a Unix socket in a temporary
//!   directory (never a mock), stopped and removed afterwards.
//! - [`eventually`] and [`eventually_async`]: wait for a condition, with a patience taken
//!   from the environment ([`patience`]).
//! - [`tenant::TenantDaemon`]: the real `tenant-agent` daemon, enrolled with a hub on
//!   loopback, for the hub's tests that need a tenant that really holds and runs actions.
//! - [`bind_local`]: a listener bound before it is handed to a server, so that no test races
//!   another for a "free" port.
//!
//! This crate is for tests only: its helpers panic with a clear message where a test would
//! (a timeout, a loopback port that cannot be bound).

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

pub mod hub;
pub mod pg;
pub mod tenant;

/// The environment variable that sets [`patience`], in whole seconds.
pub const PATIENCE_ENV: &str = "TEST_PATIENCE_SECS";

/// [`patience`] when [`PATIENCE_ENV`] is unset or not a number of seconds.
pub const DEFAULT_PATIENCE: Duration = Duration::from_secs(60);

/// How long to wait for something that takes seconds on a busy 2-core machine:
/// `$TEST_PATIENCE_SECS` seconds, else [`DEFAULT_PATIENCE`].
pub fn patience() -> Duration {
    std::env::var(PATIENCE_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(DEFAULT_PATIENCE, Duration::from_secs)
}

/// The pause before poll number `attempt` (0-based): 10 ms doubling up to 250 ms.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(10u64.saturating_mul(1u64 << attempt.min(5)).min(250))
}

/// Calls `f` until it returns `Some`, and returns that value. Between calls it sleeps a
/// little (10 ms, doubling up to 250 ms).
///
/// # Panics
///
/// When `f` is still `None` after [`patience`], with a message naming `what` (the thing
/// waited for, e.g. "the hub answers /health").
pub fn eventually<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    eventually_within(what, patience(), f)
}

/// [`eventually`] with an explicit patience instead of the environment's.
///
/// # Panics
///
/// When `f` is still `None` after `patience`, with a message naming `what`.
#[allow(clippy::panic, reason = "a test helper: a timeout fails the test")]
pub fn eventually_within<T>(what: &str, patience: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + patience;
    let mut attempt = 0u32;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {patience:?} ({PATIENCE_ENV}) waiting for: {what}");
        }
        std::thread::sleep(backoff(attempt));
        attempt = attempt.saturating_add(1);
    }
}

/// [`eventually`] for async conditions, on a Tokio runtime (sleeps with `tokio::time`).
///
/// # Panics
///
/// When `f` is still `None` after [`patience`], with a message naming `what`.
#[allow(clippy::panic, reason = "a test helper: a timeout fails the test")]
pub async fn eventually_async<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let patience = patience();
    let deadline = Instant::now() + patience;
    let mut attempt = 0u32;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {patience:?} ({PATIENCE_ENV}) waiting for: {what}");
        }
        tokio::time::sleep(backoff(attempt)).await;
        attempt = attempt.saturating_add(1);
    }
}

/// A TCP listener already bound to `127.0.0.1` on a port the kernel chose, and its address.
/// Hand the listener itself to the server under test: a port number alone could be taken by
/// another test between the lookup and the server's own bind.
///
/// # Panics
///
/// When the loopback address cannot be bound (a broken test machine).
#[allow(clippy::panic, reason = "a test helper: no loopback means no test")]
pub fn bind_local() -> (TcpListener, SocketAddr) {
    let bound = TcpListener::bind(("127.0.0.1", 0)).and_then(|l| {
        let addr = l.local_addr()?;
        Ok((l, addr))
    });
    match bound {
        Ok(bound) => bound,
        Err(e) => panic!("cannot bind 127.0.0.1:0: {e}"),
    }
}

/// [`bind_local`] as a Tokio listener (non-blocking, registered with the current runtime).
///
/// # Panics
///
/// When the loopback address cannot be bound, or outside a Tokio runtime.
#[allow(clippy::panic, reason = "a test helper: no loopback means no test")]
pub fn bind_local_tokio() -> (tokio::net::TcpListener, SocketAddr) {
    let (listener, addr) = bind_local();
    let converted = listener
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpListener::from_std(listener));
    match converted {
        Ok(listener) => (listener, addr),
        Err(e) => panic!("cannot hand 127.0.0.1:{} to Tokio: {e}", addr.port()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(0), Duration::from_millis(10));
        assert_eq!(backoff(1), Duration::from_millis(20));
        assert_eq!(backoff(4), Duration::from_millis(160));
        assert_eq!(backoff(5), Duration::from_millis(250));
        assert_eq!(backoff(u32::MAX), Duration::from_millis(250));
    }

    #[test]
    fn eventually_returns_the_first_some() {
        let mut calls = 0;
        let got = eventually("the third call", || {
            calls += 1;
            (calls == 3).then_some(calls * 10)
        });
        assert_eq!(got, 30);
        assert_eq!(calls, 3);
    }

    #[test]
    #[should_panic(expected = "waiting for: the impossible")]
    fn eventually_names_what_it_waited_for() {
        eventually_within("the impossible", Duration::from_millis(30), || None::<()>);
    }

    #[test]
    fn patience_has_a_default() {
        // The variable may be set by `cargo xtask test`; either way it is positive.
        assert!(patience() > Duration::ZERO);
    }

    #[tokio::test]
    async fn eventually_async_returns_the_first_some() {
        let mut calls = 0;
        let got = eventually_async("the second call", async || {
            calls += 1;
            tokio::task::yield_now().await;
            (calls == 2).then_some("ready")
        })
        .await;
        assert_eq!(got, "ready");
    }

    #[test]
    fn bound_listener_accepts_on_its_address() {
        let (listener, addr) = bind_local();
        assert!(addr.ip().is_loopback());
        assert_ne!(addr.port(), 0);
        let client = std::net::TcpStream::connect(addr).unwrap();
        let (server_side, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        drop(server_side);
    }

    #[tokio::test]
    async fn tokio_listener_accepts_on_its_address() {
        let (listener, addr) = bind_local_tokio();
        let (accepted, connected) =
            tokio::join!(listener.accept(), tokio::net::TcpStream::connect(addr));
        assert_eq!(
            accepted.unwrap().1,
            connected.unwrap().local_addr().unwrap()
        );
    }
}
