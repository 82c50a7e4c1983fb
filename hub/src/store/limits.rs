//! Fixed-window counters for rate limits, shared by every replica.

use super::{Store, StoreError};

impl Store {
    /// Counts one event for `key` in its current window of `window_secs` (a window that has
    /// ended starts again at `now`). Returns (count including this one, window start).
    /// Atomic: concurrent hits from any replica are all counted.
    pub async fn rate_hit(
        &self,
        key: &str,
        window_secs: i64,
        now: i64,
    ) -> Result<(i64, i64), StoreError> {
        let r = self
            .one(
                "INSERT INTO rate_windows (key, window_start, count) VALUES ($1, $2, 1)
                 ON CONFLICT (key) DO UPDATE SET
                    count = CASE WHEN rate_windows.window_start + $3 <= $2 THEN 1
                                 ELSE rate_windows.count + 1 END,
                    window_start = CASE WHEN rate_windows.window_start + $3 <= $2 THEN $2
                                        ELSE rate_windows.window_start END
                 RETURNING count, window_start",
                &[key.into(), now.into(), window_secs.into()],
            )
            .await?;
        Ok((r.i64(0)?, r.i64(1)?))
    }

    /// Takes one event back (an attempt that was refused or succeeded).
    pub async fn rate_unhit(&self, key: &str) -> Result<(), StoreError> {
        self.exec(
            "UPDATE rate_windows SET count = count - 1 WHERE key = $1 AND count > 0",
            &[key.into()],
        )
        .await
        .map(|_| ())
    }

    /// Forgets `key`'s window.
    pub async fn rate_reset(&self, key: &str) -> Result<(), StoreError> {
        self.exec("DELETE FROM rate_windows WHERE key = $1", &[key.into()])
            .await
            .map(|_| ())
    }

    /// Events counted for `key` in its current window.
    pub async fn rate_count(
        &self,
        key: &str,
        window_secs: i64,
        now: i64,
    ) -> Result<i64, StoreError> {
        let row = self
            .opt(
                "SELECT count FROM rate_windows WHERE key = $1 AND window_start + $2 > $3",
                &[key.into(), window_secs.into(), now.into()],
            )
            .await?;
        Ok(row.map(|r| r.i64(0)).transpose()?.unwrap_or(0))
    }
}
