//! Ending what a previous run of this worker left behind. Supervisors end their steps when
//! the worker dies, but a supervisor killed together with its worker cannot: so a restarted
//! worker, before it reports an abandoned attempt, kills the process group it recorded for
//! the attempt, and any process whose environment names the attempt (`SKYNET_JOB_ID` and
//! `SKYNET_ATTEMPT`, which every step starts with). A recorded group id that was reused by
//! somebody else's processes is left alone: only processes that carry the attempt's names in
//! their environment are touched.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use skynet_protocol::JobId;

/// Processes of this user whose environment names `job`'s `attempt`.
fn processes_of(job: &JobId, attempt: u32) -> Vec<Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let job_var = format!("SKYNET_JOB_ID={job}");
    let attempt_var = format!("SKYNET_ATTEMPT={attempt}");
    let me = std::process::id() as i32;
    entries
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            if pid == me {
                return None;
            }
            let environ = std::fs::read(e.path().join("environ")).ok()?;
            let mut has_job = false;
            let mut has_attempt = false;
            for var in environ.split(|b| *b == 0) {
                has_job |= var == job_var.as_bytes();
                has_attempt |= var == attempt_var.as_bytes();
            }
            (has_job && has_attempt).then(|| Pid::from_raw(pid))
        })
        .collect()
}

/// Kills everything left of `job`'s `attempt` (its recorded group `pgid` included) and waits
/// until it is gone. Returns how many processes it found.
pub async fn end_leftovers(job: &JobId, attempt: u32, pgid: Option<i32>) -> usize {
    let found = processes_of(job, attempt);
    if found.is_empty() {
        return 0;
    }
    if let Some(g) = pgid.filter(|g| *g > 1)
        && found.iter().any(|p| p.as_raw() == g)
    {
        // The group's leader is still the attempt's: the whole group is.
        let _ = nix::sys::signal::killpg(Pid::from_raw(g), Signal::SIGKILL);
    }
    for _ in 0..250 {
        let left = processes_of(job, attempt);
        if left.is_empty() {
            break;
        }
        for p in left {
            let _ = kill(p, Signal::SIGKILL);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    found.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn leftovers_of_an_attempt_are_found_by_their_environment_and_killed() {
        let job = JobId::parse(&format!("cleanup-{}", std::process::id())).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .env("SKYNET_JOB_ID", job.as_str())
            .env("SKYNET_ATTEMPT", "3")
            .spawn()
            .unwrap();
        let mut other = std::process::Command::new("sleep")
            .arg("30")
            .env("SKYNET_JOB_ID", job.as_str())
            .env("SKYNET_ATTEMPT", "4")
            .spawn()
            .unwrap();
        // A spawn returns once the child is in its exec, which may be before its new
        // environment can be read: wait until both can be told apart, as a restarted worker
        // finds them (long since started).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        for (attempt, p) in [(3, &child), (4, &other)] {
            while !processes_of(&job, attempt).contains(&Pid::from_raw(p.id() as i32)) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "attempt {attempt}'s process"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        assert_eq!(end_leftovers(&job, 3, Some(child.id() as i32)).await, 1);
        // Reaped here (it is this test's child), killed by the cleanup.
        let status = child.wait().unwrap();
        assert!(!status.success());
        // Another attempt's process is not touched.
        assert!(other.try_wait().unwrap().is_none());
        other.kill().unwrap();
        let _ = other.wait();
    }
}
