//! The standard `process_*` metrics every Prometheus client library exports
//! (CPU time, memory, descriptors, start time, threads), read from /proc when
//! scraped. prometheus-client has no collector for them, and the crates that
//! do serve the `metrics` facade, not this registry. Whatever cannot be read
//! (another OS, a /proc hidden by `ProcSubset=pid`) is left out, not made up.

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

/// One reading of the process, as Prometheus names it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Sample {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub threads: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub start_time_seconds: Option<f64>,
}

/// The fields of `/proc/<pid>/stat` after the command name (which may hold
/// spaces and parentheses, so it is skipped up to its last `)`): the state is
/// the first of them, field 3 of proc(5).
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().collect())
}

/// Fills `sample` from the text of `/proc/self/stat`, given the clock tick,
/// the page size and the boot time (`btime` of /proc/stat) where known.
fn read_stat(stat: &str, ticks: f64, page: u64, boot: Option<u64>, sample: &mut Sample) {
    let Some(f) = stat_fields(stat) else { return };
    // proc(5) field n is f[n - 3].
    let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    if let (Some(utime), Some(stime)) = (field(14), field(15)) {
        sample.cpu_seconds = Some((utime + stime) as f64 / ticks);
    }
    sample.threads = field(20);
    if let (Some(start), Some(boot)) = (field(22), boot) {
        sample.start_time_seconds = Some(boot as f64 + start as f64 / ticks);
    }
    sample.virtual_bytes = field(23);
    sample.resident_bytes = field(24).map(|pages| pages * page);
}

/// `btime` (boot time, seconds since the epoch) from the text of /proc/stat.
fn boot_time(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// Reads this process now.
pub fn sample() -> Sample {
    let mut sample = Sample::default();
    let conf = |var| nix::unistd::sysconf(var).ok().flatten().unwrap_or(0);
    let ticks = conf(nix::unistd::SysconfVar::CLK_TCK);
    let page = conf(nix::unistd::SysconfVar::PAGE_SIZE);
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| boot_time(&s));
        if ticks > 0 && page > 0 {
            read_stat(&stat, ticks as f64, page as u64, boot, &mut sample);
        }
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        // The directory's own descriptor is one of them while it is read.
        sample.open_fds = Some(fds.count().saturating_sub(1) as u64);
    }
    if let Ok((soft, _)) = rlimit::getrlimit(rlimit::Resource::NOFILE) {
        sample.max_fds = Some(soft);
    }
    sample
}

/// The collector registered (without the `timecho_` prefix) with the
/// process's registry.
#[derive(Debug)]
pub struct ProcessCollector {
    /// When the collector was made: the start time where /proc/stat is hidden.
    made: f64,
}

impl Default for ProcessCollector {
    fn default() -> Self {
        let made = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        ProcessCollector { made }
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: Option<f64>,
) -> Result<(), std::fmt::Error> {
    match value {
        Some(v) => ConstGauge::new(v).encode(encoder.encode_descriptor(
            name,
            help,
            None,
            MetricType::Gauge,
        )?),
        None => Ok(()),
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = sample();
        if let Some(cpu) = s.cpu_seconds {
            let help = "Total user and system CPU time spent in seconds.";
            let m = encoder.encode_descriptor(
                "process_cpu_seconds",
                help,
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(cpu).encode(m)?;
        }
        let e = &mut encoder;
        let n = |v: Option<u64>| v.map(|v| v as f64);
        gauge(
            e,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            n(s.resident_bytes),
        )?;
        gauge(
            e,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            n(s.virtual_bytes),
        )?;
        gauge(
            e,
            "process_open_fds",
            "Number of open file descriptors.",
            n(s.open_fds),
        )?;
        gauge(
            e,
            "process_max_fds",
            "Maximum number of open file descriptors.",
            n(s.max_fds),
        )?;
        gauge(
            e,
            "process_threads",
            "Number of OS threads in the process.",
            n(s.threads),
        )?;
        let started = Some(s.start_time_seconds.unwrap_or(self.made));
        let help = "Start time of the process since the Unix epoch in seconds.";
        gauge(e, "process_start_time_seconds", help, started)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_is_read_past_a_command_name_with_spaces_and_parentheses() {
        // A real line's shape, with a hostile command name.
        let stat = "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 7 0 \
                    123400 104857600 2560 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0";
        let mut s = Sample::default();
        read_stat(stat, 100.0, 4096, Some(1_700_000_000), &mut s);
        assert_eq!(s.cpu_seconds, Some(3.0));
        assert_eq!(s.threads, Some(7));
        assert_eq!(s.start_time_seconds, Some(1_700_000_000.0 + 1234.0));
        assert_eq!(s.virtual_bytes, Some(104_857_600));
        assert_eq!(s.resident_bytes, Some(2560 * 4096));
        let mut none = Sample::default();
        read_stat("garbage without the name", 100.0, 4096, None, &mut none);
        assert_eq!(none, Sample::default());
    }

    #[test]
    fn boot_time_is_found_in_proc_stat() {
        assert_eq!(
            boot_time("cpu 1 2 3\nbtime 1700000000\nprocesses 9\n"),
            Some(1_700_000_000)
        );
        assert_eq!(boot_time("cpu 1 2 3\n"), None);
    }

    #[test]
    fn this_process_is_read() {
        let s = sample();
        assert!(
            s.cpu_seconds.is_some() && s.resident_bytes.is_some_and(|b| b > 0),
            "{s:?}"
        );
        assert!(
            s.open_fds.is_some_and(|n| n >= 3) && s.max_fds.is_some(),
            "{s:?}"
        );
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = s.start_time_seconds.expect("start time");
        assert!(
            started <= now + 1.0 && started > now - 86_400.0 * 365.0,
            "{started}"
        );
    }
}
