//! What /proc tells about the processes under test: resident memory and CPU time.
//!
//! CPU time matters on a shared machine: throughput there depends on what else
//! runs, but the CPU a server spends per message hardly does.

use std::io;
use std::time::Duration;

/// VmRSS of a process in KiB, from /proc/PID/status.
pub fn rss_kib(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_vm_rss(&status)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no VmRSS line in its status"))
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
}

/// CPU time (user + system, all threads) used so far by each process `pid` and
/// every live process in its process group, added up. A server that forks a
/// process per client (websockify) is counted whole when it leads its group, as
/// the servers `bench/compare.sh` starts with `setsid` do. Children that have
/// exited are left out (zombies, and the parent's total for reaped children):
/// otherwise a child of an earlier run, reaped during this one, would add its
/// whole life to this run's figure.
pub fn cpu_time(pids: &[u32]) -> io::Result<Duration> {
    let mut ticks = 0;
    for &pid in pids {
        // The process itself must exist; its group members come and go.
        let own = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let own = parse_stat(&own)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unreadable /proc stat"))?;
        ticks += own.ticks;
        for entry in std::fs::read_dir("/proc")?.flatten() {
            let Some(other) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if other == pid {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(format!("/proc/{other}/stat")) else {
                continue;
            };
            if let Some(stat) = parse_stat(&text).filter(|s| s.pgrp == pid && !s.zombie) {
                ticks += stat.ticks;
            }
        }
    }
    Ok(ticks_to_duration(ticks))
}

/// CPU time this process has used so far.
pub fn own_cpu_time() -> io::Result<Duration> {
    let text = std::fs::read_to_string("/proc/self/stat")?;
    let stat = parse_stat(&text)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unreadable /proc stat"))?;
    Ok(ticks_to_duration(stat.ticks))
}

fn ticks_to_duration(ticks: u64) -> Duration {
    // SAFETY: sysconf only reads a constant of the system.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = u64::try_from(per_second)
        .ok()
        .filter(|&t| t > 0)
        .unwrap_or(100);
    Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / per_second)
}

struct Stat {
    zombie: bool,
    pgrp: u32,
    /// utime + stime, in clock ticks.
    ticks: u64,
}

/// Reads /proc/PID/stat; the command name may hold spaces and parentheses, so
/// fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(3) ppid(4) pgrp(5) ... utime(14) stime(15).
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    let zombie = *fields.first()? == "Z";
    let pgrp = u32::try_from(field(5)?).ok()?;
    let ticks = field(14)? + field(15)?;
    Some(Stat {
        zombie,
        pgrp,
        ticks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_memory_is_read_from_proc_status() {
        let status = "Name:\ttimecho\nVmPeak:\t  99 kB\nVmRSS:\t   12345 kB\nRssAnon:\t 1 kB\n";
        assert_eq!(parse_vm_rss(status), Some(12345));
        assert_eq!(parse_vm_rss("Name:\tkthreadd\n"), None);
    }

    #[test]
    fn stat_fields_are_counted_from_the_end_of_the_name() {
        let text = "4242 (web (socket) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    70 30 5 1 20 0 1 0 100 1000 200 18446744073709551615";
        let stat = parse_stat(text).unwrap();
        assert_eq!(stat.pgrp, 4242);
        assert_eq!(stat.ticks, 100);
        assert!(!stat.zombie);
        let zombie = text.replacen(") S 1", ") Z 1", 1);
        assert!(parse_stat(&zombie).unwrap().zombie);
    }

    #[test]
    fn own_figures_are_readable() {
        assert!(rss_kib(std::process::id()).unwrap() > 0);
        let spent = own_cpu_time().unwrap();
        assert!(cpu_time(&[std::process::id()]).unwrap() >= spent);
    }
}
