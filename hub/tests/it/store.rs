//! The store's behaviour, the same on every engine: compare-and-set transitions, idempotent
//! keys, leases that survive a crashed replica, replay nonces and rate-limit windows shared
//! by replicas. Time is a value here: the tests pass `now` instead of sleeping.

use std::collections::BTreeSet;

use hub::store::{JobKind, Store};
use serde_json::json;

use super::{Backend, DbTarget};

async fn open(backend: Backend) -> (tempfile::TempDir, DbTarget, Store) {
    let dir = tempfile::tempdir().unwrap();
    let target = DbTarget::on(backend, dir.path());
    let store = target.store().await;
    (dir, target, store)
}

const T: i64 = 1_800_000_000;

async fn jobs_are_keyed_leased_retried_and_taken_over_after_a_crash(backend: Backend) {
    let (_dir, _t, s) = open(backend).await;
    // One job per key, however often it is queued.
    assert!(
        s.job_enqueue(JobKind::Push, "push:approval:a", &json!({"id": "a"}), T, T)
            .await
            .unwrap()
    );
    assert!(
        !s.job_enqueue(JobKind::Push, "push:approval:a", &json!({"id": "b"}), T, T)
            .await
            .unwrap()
    );
    // Not due yet.
    assert!(
        s.job_enqueue(JobKind::Push, "push:approval:later", &json!({}), T + 100, T)
            .await
            .unwrap()
    );
    let claimed = s.job_claim("replica-1", 60, 10, T).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let job = &claimed[0];
    assert_eq!(
        (job.kind, job.key.as_str(), job.attempts),
        (Some(JobKind::Push), "push:approval:a", 1)
    );
    assert_eq!(job.payload, json!({"id": "a"}));
    // Leased: nobody else gets it while the lease runs.
    assert!(
        s.job_claim("replica-2", 60, 10, T + 59)
            .await
            .unwrap()
            .is_empty()
    );
    // Replica 1 dies; its lease runs out and replica 2 takes the job over.
    let again = s.job_claim("replica-2", 60, 10, T + 60).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id, again[0].attempts), (job.id, 2));
    // The dead replica's late completion changes nothing; the owner's does.
    assert!(!s.job_done(job.id, "replica-1", T + 61).await.unwrap());
    assert!(
        s.job_again(job.id, "replica-2", T + 70, Some("push service 503"), false)
            .await
            .unwrap()
    );
    assert!(
        s.job_claim("replica-2", 60, 10, T + 69)
            .await
            .unwrap()
            .is_empty()
    );
    let third = s.job_claim("replica-1", 60, 10, T + 70).await.unwrap();
    assert_eq!(third[0].attempts, 3);
    assert!(s.job_done(third[0].id, "replica-1", T + 71).await.unwrap());
    let rows = s.jobs(10).await.unwrap();
    let done = rows.iter().find(|r| r.id == job.id).unwrap();
    assert_eq!(
        (done.done_at, done.last_error.as_deref()),
        (Some(T + 71), None)
    );
    // Done jobs keep their key until forgotten.
    assert!(
        !s.job_enqueue(JobKind::Push, "push:approval:a", &json!({}), T, T)
            .await
            .unwrap()
    );
    assert_eq!(s.jobs_forget(T + 72).await.unwrap(), 1);
    assert!(
        s.job_enqueue(JobKind::Push, "push:approval:a", &json!({}), T, T)
            .await
            .unwrap()
    );
}

async fn two_replicas_never_claim_the_same_job(backend: Backend) {
    let (_dir, target, s) = open(backend).await;
    for i in 0..60 {
        s.job_enqueue(
            JobKind::Push,
            &format!("push:approval:{i}"),
            &json!({}),
            T,
            T,
        )
        .await
        .unwrap();
    }
    // Two replicas, each with its own connections, claim concurrently in small batches.
    let other = target.store().await;
    let claim = |store: Store, owner: &'static str| {
        tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let jobs = store.job_claim(owner, 600, 3, T).await.unwrap();
                if jobs.is_empty() {
                    return got;
                }
                got.extend(jobs.into_iter().map(|j| j.id));
            }
        })
    };
    let (a, b) = tokio::join!(claim(s.clone(), "a"), claim(other, "b"));
    let (a, b) = (a.unwrap(), b.unwrap());
    let all: BTreeSet<i64> = a.iter().chain(&b).copied().collect();
    assert_eq!(a.len() + b.len(), 60, "a job was claimed twice");
    assert_eq!(all.len(), 60);
}

async fn nonces_refuse_replays_until_the_window_ends(backend: Backend) {
    let (_dir, target, s) = open(backend).await;
    let other = target.store().await;
    assert!(s.nonce_insert(7, "n-1", T + 300, T).await.unwrap());
    // The same nonce at another replica: a replay.
    assert!(!other.nonce_insert(7, "n-1", T + 300, T + 10).await.unwrap());
    // Another tenant's nonce is its own.
    assert!(other.nonce_insert(8, "n-1", T + 300, T).await.unwrap());
    assert_eq!(s.nonce_count(T).await.unwrap(), 2);
    // After the window the nonce may come again (the signature's timestamp is refused
    // long before that anyway) and the sweep forgets it.
    assert!(s.nonce_insert(7, "n-1", T + 700, T + 300).await.unwrap());
    s.sweep_expired(T + 701, 900).await.unwrap();
    assert_eq!(s.nonce_count(T).await.unwrap(), 0);
}

async fn rate_windows_count_every_replica_and_restart_after_the_window(backend: Backend) {
    let (_dir, target, s) = open(backend).await;
    let other = target.store().await;
    let stores = [&s, &other];
    let mut handles = Vec::new();
    for i in 0..20 {
        let store = stores[i % 2].clone();
        handles.push(tokio::spawn(async move {
            store
                .rate_hit("login-ip:10.0.0.1", 900, T + 5)
                .await
                .unwrap()
        }));
    }
    let mut counts = Vec::new();
    for h in handles {
        let (count, start) = h.await.unwrap();
        assert_eq!(start, T + 5);
        counts.push(count);
    }
    counts.sort_unstable();
    assert_eq!(
        counts,
        (1..=20).collect::<Vec<i64>>(),
        "every hit counted once"
    );
    other.rate_unhit("login-ip:10.0.0.1").await.unwrap();
    assert_eq!(
        s.rate_count("login-ip:10.0.0.1", 900, T + 10)
            .await
            .unwrap(),
        19
    );
    // The window ends: counting starts again.
    assert_eq!(
        s.rate_hit("login-ip:10.0.0.1", 900, T + 905).await.unwrap(),
        (1, T + 905)
    );
    s.rate_reset("login-ip:10.0.0.1").await.unwrap();
    assert_eq!(
        s.rate_count("login-ip:10.0.0.1", 900, T + 905)
            .await
            .unwrap(),
        0
    );
}

async fn the_signing_key_fingerprint_is_recorded_once(backend: Backend) {
    let (_dir, _t, s) = open(backend).await;
    assert_eq!(
        s.meta_init("signing_key_fingerprint", "aa").await.unwrap(),
        "aa"
    );
    assert_eq!(
        s.meta_init("signing_key_fingerprint", "bb").await.unwrap(),
        "aa"
    );
    let key = shared::SigningKey::generate().unwrap();
    let err = hub::keys::check_recorded(&s, &key, std::path::Path::new("/etc/hub/signing.key"))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("every hub replica must read the same key file"),
        "{err}"
    );
}

on_every_backend!(
    jobs_are_keyed_leased_retried_and_taken_over_after_a_crash,
    two_replicas_never_claim_the_same_job,
    nonces_refuse_replays_until_the_window_ends,
    rate_windows_count_every_replica_and_restart_after_the_window,
    the_signing_key_fingerprint_is_recorded_once,
);
