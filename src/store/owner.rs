//! Owners of job leases. Every process that claims jobs (`serve`, a `reprocess` run) registers
//! as an owner and beats a heartbeat into the database; each lease names its owner. A job whose
//! owner has not beaten for a few seconds can be claimed again, without waiting for its lease
//! (a minute by default) to run out, and an owner known to be gone is cleared at once.
//!
//! "Known to be gone": a process that registers records which process it is (boot, PID
//! namespace, PID and the PID's start time). A later process on the same kernel and in the same
//! PID namespace can then tell for certain whether that process still runs; a restart after
//! `kill -9` finds its predecessor gone and takes its jobs immediately. Owners elsewhere (other
//! hosts or containers) are judged by their heartbeat alone. Either way the lease token still
//! fences every write: an owner wrongly taken for gone loses its job's commit, never doubles it.

/// Owners silent this long are forgotten whatever else is known: nothing of theirs still runs.
pub const FORGET_AFTER_MS: i64 = 24 * 3600 * 1000;

/// One process's identity, precise enough to tell whether it still runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessIdentity {
    pub host: String,
    /// This boot of the kernel (`/proc/sys/kernel/random/boot_id`).
    pub boot_id: String,
    /// The PID namespace (`/proc/self/ns/pid`): PIDs mean the same only within one.
    pub pid_namespace: String,
    pub pid: u32,
    /// The process's start time in clock ticks since boot: a reused PID has another.
    pub start_ticks: u64,
}

impl ProcessIdentity {
    pub fn current() -> Self {
        let pid = std::process::id();
        Self {
            host: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_default(),
            boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
            pid_namespace: std::fs::read_link("/proc/self/ns/pid")
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            pid,
            start_ticks: start_ticks(pid).unwrap_or(0),
        }
    }

    /// True only when `self` is certainly not running: it lived on this kernel, in this PID
    /// namespace, and its PID is free or now belongs to a process started at another time.
    /// Unknown (another host, container or boot, or unreadable facts) is not gone.
    pub fn is_gone(&self) -> bool {
        let here = Self::current();
        if self.boot_id.is_empty()
            || self.pid_namespace.is_empty()
            || self.boot_id != here.boot_id
            || self.pid_namespace != here.pid_namespace
        {
            return false;
        }
        if self.pid == here.pid && self.start_ticks == here.start_ticks {
            // That is this very process (registered twice): not gone.
            return false;
        }
        match start_ticks(self.pid) {
            None => !std::path::Path::new(&format!("/proc/{}", self.pid)).exists(),
            Some(now) => now != self.start_ticks,
        }
    }
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Field 22 of `/proc/PID/stat`, read after the command name (which may hold spaces and
/// parentheses, so the split is at the last `)`).
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// A registered owner: its id names it in the `owners` table and on the leases it holds.
#[derive(Debug, Clone)]
pub struct Owner {
    pub id: String,
    /// What the process is (`serve`, `reprocess`), for operators reading the table.
    pub role: String,
    pub identity: ProcessIdentity,
}

impl Owner {
    pub fn new(role: &str) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            role: role.to_owned(),
            identity: ProcessIdentity::current(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_process_is_not_gone_and_an_exited_one_is() {
        let me = ProcessIdentity::current();
        assert!(me.start_ticks > 0, "{me:?}");
        assert!(!me.is_gone());

        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let alive = ProcessIdentity {
            pid: child.id(),
            start_ticks: start_ticks(child.id()).unwrap(),
            ..me.clone()
        };
        assert!(!alive.is_gone());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(alive.is_gone());

        // The same PID started at another time is another process.
        let reused = ProcessIdentity {
            start_ticks: me.start_ticks + 1,
            ..me.clone()
        };
        assert!(reused.is_gone());
        // Another PID namespace or boot cannot be judged from here.
        let elsewhere = ProcessIdentity {
            pid_namespace: "pid:[1]".into(),
            ..alive
        };
        assert!(!elsewhere.is_gone());
    }
}
