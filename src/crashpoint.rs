//! Named points in the middle of a multi-step change of the spool or the checkpoints,
//! where a debug build kills its own process with SIGKILL when `NSS_CRASH_AT` names the
//! point: the crash tests land there exactly, where random kill -9 would hit once in
//! thousands. Likewise `NSS_FAIL_AT` makes one step fail once with an I/O error, for the
//! steps a real disk fails only rarely (a directory's fsync after a rename), after
//! `NSS_FAIL_SLOW_MS` milliseconds when set (a failing disk is often slow to say so).
//! Release builds ignore these variables.

/// Kills the process, as kill -9 would, when this is the point `NSS_CRASH_AT` names (debug
/// builds only).
pub fn here(point: &str) {
    #[cfg(debug_assertions)]
    {
        static CHOSEN: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
        let chosen = CHOSEN.get_or_init(|| std::env::var("NSS_CRASH_AT").ok());
        if chosen.as_deref() == Some(point) {
            tracing::warn!(point, "crash point reached: killing the process");
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = point;
}

/// Fails once with an I/O error when this is the point `NSS_FAIL_AT` names (debug builds
/// only); later passes, and every other point, succeed.
pub fn fail_once(point: &str) -> std::io::Result<()> {
    #[cfg(debug_assertions)]
    {
        use std::sync::atomic::{AtomicBool, Ordering};
        static CHOSEN: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
        static FAILED: AtomicBool = AtomicBool::new(false);
        let chosen = CHOSEN.get_or_init(|| std::env::var("NSS_FAIL_AT").ok());
        if chosen.as_deref() == Some(point) && !FAILED.swap(true, Ordering::Relaxed) {
            let slow = std::env::var("NSS_FAIL_SLOW_MS")
                .ok()
                .and_then(|ms| ms.parse().ok())
                .unwrap_or(0);
            tracing::warn!(
                point,
                slow_ms = slow,
                "failure point reached: failing this step once"
            );
            std::thread::sleep(std::time::Duration::from_millis(slow));
            return Err(std::io::Error::other(format!("failure point {point}")));
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = point;
    Ok(())
}
