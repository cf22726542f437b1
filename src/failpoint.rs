//! Named pauses for the crash suite: with `CHATSINK_FAILPOINTS=load.mid=60000`, a debug build
//! stops for 60 s when it reaches `load.mid` (after touching `$CHATSINK_FAILPOINT_DIR/load.mid`
//! so the harness knows), and the harness SIGKILLs it there. Release builds compile this away.

use std::time::Duration;

/// How long to pause at `name`, announcing the arrival; `None` when the point is not armed.
#[cfg(debug_assertions)]
fn armed(name: &str) -> Option<Duration> {
    let spec = std::env::var("CHATSINK_FAILPOINTS").ok()?;
    let ms = spec
        .split(',')
        .filter_map(|entry| entry.split_once('='))
        .find(|(point, _)| point.trim() == name)
        .and_then(|(_, ms)| ms.trim().parse::<u64>().ok())?;
    if let Ok(dir) = std::env::var("CHATSINK_FAILPOINT_DIR") {
        let _ = std::fs::write(std::path::Path::new(&dir).join(name), b"");
    }
    eprintln!("chatsink: failpoint {name} reached; pausing {ms} ms");
    Some(Duration::from_millis(ms))
}

#[cfg(not(debug_assertions))]
#[inline(always)]
fn armed(_name: &str) -> Option<Duration> {
    None
}

/// How far this process's clock is set off from the host's, in milliseconds: with
/// `CHATSINK_TEST_CLOCK_SKEW_MS=3600000` a debug build's clock runs an hour ahead, as a host
/// whose clock is wrong would (the tests of "one clock" on PostgreSQL). Release builds: 0.
#[cfg(debug_assertions)]
pub fn clock_skew_ms() -> i64 {
    static SKEW: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *SKEW.get_or_init(|| {
        std::env::var("CHATSINK_TEST_CLOCK_SKEW_MS")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    })
}

#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn clock_skew_ms() -> i64 {
    0
}

/// A pause on a blocking thread.
#[inline]
pub fn hit(name: &str) {
    if let Some(pause) = armed(name) {
        std::thread::sleep(pause);
    }
}

/// A pause in async code.
#[inline]
pub async fn hit_async(name: &str) {
    if let Some(pause) = armed(name) {
        tokio::time::sleep(pause).await;
    }
}
