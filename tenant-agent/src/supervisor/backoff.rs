//! The supervisor's arithmetic, kept pure so that it is tested with plain data: the restart
//! delay (doubling from an initial delay up to a cap, back to the start after a long healthy
//! run) and crash-loop detection (s6-permafailon style: N deaths within T seconds).

use std::collections::VecDeque;
use std::time::Duration;

/// Restart delays: `initial`, `2·initial`, `4·initial`, ... capped at `max`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        let initial = initial.min(max);
        Backoff {
            initial,
            max,
            next: initial,
        }
    }

    /// The delay before the next restart; the one after it doubles (up to the cap).
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        delay
    }

    /// Back to the initial delay (after a healthy run long enough to count as recovered).
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// Deaths remembered over a sliding window.
#[derive(Debug, Clone)]
pub struct CrashLoop {
    limit: usize,
    window: Duration,
    deaths: VecDeque<Duration>,
}

impl CrashLoop {
    pub fn new(limit: u32, window: Duration) -> Self {
        CrashLoop {
            limit: usize::try_from(limit.max(1)).unwrap_or(usize::MAX),
            window,
            deaths: VecDeque::new(),
        }
    }

    /// Records a death at `at` (time since any fixed origin); true when this death makes
    /// `limit` deaths within the window: the runtime is crash-looping and must be parked.
    pub fn record(&mut self, at: Duration) -> bool {
        self.deaths.push_back(at);
        while let Some(first) = self.deaths.front() {
            if at.saturating_sub(*first) >= self.window {
                self.deaths.pop_front();
            } else {
                break;
            }
        }
        self.deaths.len() >= self.limit
    }

    /// Deaths within the window ending at the last one.
    pub fn recent(&self) -> usize {
        self.deaths.len()
    }

    /// Forgets every death (an operator restarted a parked runtime).
    pub fn clear(&mut self) {
        self.deaths.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `events` ("d" = death, "r" = reset) and checks the delays handed out, in ms.
    #[track_caller]
    fn check_backoff(initial_ms: u64, max_ms: u64, events: &str, expected: &[u64]) {
        let mut b = Backoff::new(
            Duration::from_millis(initial_ms),
            Duration::from_millis(max_ms),
        );
        let mut got = Vec::new();
        for e in events.split_whitespace() {
            match e {
                "d" => got.push(u64::try_from(b.next_delay().as_millis()).unwrap_or(0)),
                "r" => b.reset(),
                other => unreachable!("bad event {other}"),
            }
        }
        assert_eq!(got, expected, "{events}");
    }

    #[test]
    fn backoff_doubles_caps_and_resets() {
        check_backoff(1000, 30_000, "d", &[1000]);
        check_backoff(
            1000,
            30_000,
            "d d d d d d d",
            &[1000, 2000, 4000, 8000, 16000, 30000, 30000],
        );
        check_backoff(1000, 30_000, "d d d r d d", &[1000, 2000, 4000, 1000, 2000]);
        check_backoff(500, 2000, "d d d d", &[500, 1000, 2000, 2000]);
        check_backoff(5000, 1000, "d d", &[1000, 1000]);
    }

    /// Deaths at the given seconds; `expected` says, per death, whether it parks.
    #[track_caller]
    fn check_loop(limit: u32, window_s: u64, deaths: &[u64], expected: &[bool]) {
        let mut c = CrashLoop::new(limit, Duration::from_secs(window_s));
        let got: Vec<bool> = deaths
            .iter()
            .map(|s| c.record(Duration::from_secs(*s)))
            .collect();
        assert_eq!(got, expected, "{deaths:?}");
    }

    #[test]
    fn crash_loops_are_n_deaths_within_the_window() {
        check_loop(3, 60, &[0, 10, 20], &[false, false, true]);
        check_loop(3, 60, &[0, 10, 70, 80], &[false, false, false, false]);
        check_loop(3, 60, &[0, 10, 50, 80], &[false, false, true, false]);
        check_loop(3, 60, &[0, 30, 61, 100], &[false, false, false, false]);
        check_loop(1, 60, &[5], &[true]);
        check_loop(
            5,
            300,
            &[0, 1, 3, 7, 15],
            &[false, false, false, false, true],
        );
        check_loop(2, 10, &[0, 10, 20], &[false, false, false]);
    }
}
