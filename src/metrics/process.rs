//! This process's CPU time and resident memory, read from `/proc/self`.

/// What the kernel says this process has used.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// User and system time, all threads.
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
}

/// Clock ticks per second of `/proc/*/stat`'s times: the kernel reports
/// them in USER_HZ, which is 100 on every architecture Linux builds
/// `sysconf(_SC_CLK_TCK)` for today.
const USER_HZ: f64 = 100.0;

/// `None` where there is no `/proc` (not Linux).
pub fn read_self() -> Option<Usage> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    Some(Usage {
        cpu_seconds: cpu_ticks(&stat)? as f64 / USER_HZ,
        resident_bytes: resident_kib(&status)? * 1024,
    })
}

/// `utime` + `stime` (fields 14 and 15). The command name (field 2) may
/// hold spaces and parentheses, so fields are counted after its last `)`.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

/// `VmRSS:    1234 kB`.
fn resident_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_counted_after_a_command_name_with_spaces_and_parentheses() {
        let stat =
            "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 900 0 0 0 150 25 0 0 20 0 9 0 123 456 789";
        assert_eq!(cpu_ticks(stat), Some(175));
    }

    #[test]
    fn resident_memory_is_read_in_kib() {
        let status = "Name:\tgatehouse\nVmSize:\t  99999 kB\nVmRSS:\t   2048 kB\nThreads:\t9\n";
        assert_eq!(resident_kib(status), Some(2048));
    }

    #[test]
    fn this_process_has_used_some_memory() {
        let usage = read_self().expect("/proc/self");
        assert!(usage.resident_bytes > 1024 * 1024, "{usage:?}");
        assert!(usage.cpu_seconds >= 0.0, "{usage:?}");
    }
}
