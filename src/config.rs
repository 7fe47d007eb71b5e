//! Process-wide settings: every network bound and the refresh window, with
//! their defaults and limits written once.
//!
//! reqwest has no timeout by default; a token endpoint that stops answering
//! would hang an agent forever. These bounds are what keeps every wait finite
//! (docs/architecture.md, "Bounded waits"). `configure()` in Python
//! validates against the same limits, all or nothing.

use std::sync::RwLock;
use std::time::Duration;

use crate::error::{Error, Result};

/// Network bounds and the cache's refresh window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// TCP + TLS connect, per attempt.
    pub connect_timeout: Duration,
    /// One token fetch in total, all attempts and backoff included.
    pub request_timeout: Duration,
    /// Metadata-server detection during ADC discovery, in total.
    pub metadata_detect_timeout: Duration,
    /// Attempts per fetch (1 = no retry).
    pub max_attempts: u32,
    /// How long before expiry a token is refreshed in the background
    /// (at most a quarter of its lifetime).
    pub refresh_window: Duration,
}

impl Settings {
    pub const DEFAULT: Settings = Settings {
        connect_timeout: Duration::from_secs(3),
        request_timeout: Duration::from_secs(30),
        metadata_detect_timeout: Duration::from_secs(3),
        max_attempts: 3,
        refresh_window: Duration::from_secs(300),
    };

    /// Longest any duration setting may be (`Instant` arithmetic must not
    /// overflow, whatever a caller configures).
    pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
    /// Attempts allowed per fetch.
    pub const ATTEMPTS: std::ops::RangeInclusive<u32> = 1..=10;
}

impl Default for Settings {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A requested change; `None` leaves a setting as it is.
#[derive(Clone, Debug, Default)]
pub struct Changes {
    pub connect_timeout: Option<f64>,
    pub request_timeout: Option<f64>,
    pub metadata_detect_timeout: Option<f64>,
    pub max_attempts: Option<u32>,
    pub refresh_window: Option<f64>,
}

static SETTINGS: RwLock<Settings> = RwLock::new(Settings::DEFAULT);

/// The current settings.
pub fn settings() -> Settings {
    SETTINGS.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Applies `changes` if every one is valid; otherwise changes nothing and
/// names the first bad setting.
pub fn configure(changes: &Changes) -> Result<Settings> {
    let mut next = settings();
    let seconds = |name: &str, value: Option<f64>, into: &mut Duration| -> Result<()> {
        let Some(v) = value else { return Ok(()) };
        let max = Settings::MAX_DURATION.as_secs_f64();
        if !(v.is_finite() && v > 0.0 && v <= max) {
            return Err(Error::Config(format!(
                "configure({name}={v}): expected a number of seconds greater than 0 and at most {max}"
            )));
        }
        *into = Duration::from_secs_f64(v).max(Duration::from_millis(1));
        Ok(())
    };
    seconds(
        "connect_timeout",
        changes.connect_timeout,
        &mut next.connect_timeout,
    )?;
    seconds(
        "request_timeout",
        changes.request_timeout,
        &mut next.request_timeout,
    )?;
    seconds(
        "metadata_detect_timeout",
        changes.metadata_detect_timeout,
        &mut next.metadata_detect_timeout,
    )?;
    seconds(
        "refresh_window",
        changes.refresh_window,
        &mut next.refresh_window,
    )?;
    if let Some(n) = changes.max_attempts {
        if !Settings::ATTEMPTS.contains(&n) {
            return Err(Error::Config(format!(
                "configure(max_attempts={n}): expected {} to {}",
                Settings::ATTEMPTS.start(),
                Settings::ATTEMPTS.end()
            )));
        }
        next.max_attempts = n;
    }
    *SETTINGS.write().unwrap_or_else(|e| e.into_inner()) = next.clone();
    Ok(next)
}

/// Replaces the settings wholesale (tests).
#[cfg(test)]
pub fn replace(s: Settings) {
    *SETTINGS.write().unwrap_or_else(|e| e.into_inner()) = s;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_setting_changes_nothing_and_is_named() {
        let before = settings();
        let e = configure(&Changes {
            connect_timeout: Some(1.0),
            max_attempts: Some(0),
            ..Changes::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("max_attempts=0"), "{e}");
        assert_eq!(settings(), before);
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e9] {
            let e = configure(&Changes {
                request_timeout: Some(bad),
                ..Changes::default()
            })
            .unwrap_err();
            assert!(e.to_string().contains("request_timeout"), "{e}");
        }
        assert_eq!(settings(), before);
    }
}
