//! Memory and CPU time of a process, from `/proc`.

use anyhow::Context as _;

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`; 100 on Linux).
const CLK_TCK: f64 = 100.0;

/// `VmRSS` of `/proc/<pid>/status`, in bytes.
pub(crate) fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("process {pid} is gone"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS")?;
    let kb: u64 = line.split_whitespace().nth(1).context("bad VmRSS")?.parse()?;
    Ok(kb * 1024)
}

/// User + system CPU time of a process (`pid` 0: this one), in seconds.
pub(crate) fn cpu_secs(pid: u32) -> anyhow::Result<f64> {
    let path = if pid == 0 { "/proc/self/stat".to_owned() } else { format!("/proc/{pid}/stat") };
    let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let rest = stat.rsplit_once(')').context("bad stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11).context("no utime")?.parse()?;
    let stime: f64 = fields.get(12).context("no stime")?.parse()?;
    Ok((utime + stime) / CLK_TCK)
}

/// CPU use of processes between two readings, as a share of one core.
pub(crate) struct CpuMeter {
    /// Each process and its CPU time at the start.
    start_cpu: Vec<(u32, f64)>,
    start: std::time::Instant,
}

impl CpuMeter {
    pub(crate) fn start(pid: u32) -> Self {
        Self::start_all(&[pid])
    }

    /// Measures every process of `pids` (`cores` is their sum, `cores_each` each one).
    pub(crate) fn start_all(pids: &[u32]) -> Self {
        Self {
            start_cpu: pids.iter().map(|&p| (p, cpu_secs(p).unwrap_or(0.0))).collect(),
            start: std::time::Instant::now(),
        }
    }

    /// Cores busy on average since `start` (1.0 = one core all the time), all processes together.
    pub(crate) fn cores(&self) -> f64 {
        self.cores_each().iter().sum()
    }

    /// CPU seconds since `start`, per process, in the order given.
    pub(crate) fn cpu_secs_each(&self) -> Vec<f64> {
        self.start_cpu.iter().map(|&(pid, start)| cpu_secs(pid).unwrap_or(start) - start).collect()
    }

    /// Cores busy on average since `start`, per process, in the order given.
    pub(crate) fn cores_each(&self) -> Vec<f64> {
        let elapsed = self.start.elapsed().as_secs_f64().max(1e-9);
        self.start_cpu
            .iter()
            .map(|&(pid, start)| (cpu_secs(pid).unwrap_or(start) - start) / elapsed)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        assert!(rss_bytes(std::process::id()).unwrap() > 0);
        assert!(cpu_secs(0).unwrap() >= 0.0);
    }
}
