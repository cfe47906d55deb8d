//! Named crash points for the recovery tests: a test sets `FEDENGINE_CRASH_AT=POINT` or
//! `POINT:ROUND` and the process kills itself (SIGKILL, no cleanup) when it reaches that
//! point. Compiled only into debug builds: a release build has no crash points at all.
//!
//! Points: `before-training` and `after-training` (a node, around its local training),
//! `during-aggregation` (the coordinator, after the round's first update was spooled),
//! `after-checkpoint` (the coordinator, once the round's checkpoint is written),
//! `during-packaging` (before `model.zip` is written), and, in the NATS transport,
//! `mid-transfer:N` (once half the chunks of the process's N-th message of at least 16 KiB,
//! i.e. weights, are handed to the server).

pub use fl_transport::crash::CRASH_AT;

/// Kills this process if `point` (at `round`) is the armed crash point.
#[cfg(debug_assertions)]
pub(crate) fn crash_point(point: &str, round: u64) {
    let Some((name, at)) = fl_transport::crash::armed() else {
        return;
    };
    let at = at.and_then(|r| r.parse::<u64>().ok());
    if name == point && at.is_none_or(|r| r == round) {
        fl_transport::crash::kill_now(&format!("`{point}` in round {round}"));
    }
}

/// Release builds have no crash points.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub(crate) fn crash_point(_point: &str, _round: u64) {}
