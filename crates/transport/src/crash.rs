//! The mechanism behind the recovery tests' crash points (debug builds only): the armed
//! point's specification and killing the process the way a power cut would.

/// The environment variable that arms a crash point (`POINT` or `POINT:N`).
pub const CRASH_AT: &str = "FEDENGINE_CRASH_AT";

/// The armed crash point, split at its `:` (`("after-checkpoint", Some("3"))`).
pub fn armed() -> Option<(String, Option<String>)> {
    let spec = std::env::var(CRASH_AT).ok()?;
    Some(match spec.split_once(':') {
        Some((point, at)) => (point.to_owned(), Some(at.to_owned())),
        None => (spec, None),
    })
}

/// Kills this process at once with SIGKILL: no destructors, no flushing, nothing written.
pub fn kill_now(what: &str) -> ! {
    eprintln!("fedengine: crash point {what} reached; killing this process");
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &std::process::id().to_string()])
        .status();
    std::process::abort();
}
