//! Named points in the middle of a multi-step change of the spool or the checkpoints,
//! where a debug build kills its own process with SIGKILL when `NSS_CRASH_AT` names the
//! point: the crash tests land there exactly, where random kill -9 would hit once in
//! thousands. Release builds ignore the variable.

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
