//! What the agent reports about the machine it runs on: processors, memory, kernel, OS image,
//! machine and boot ids, and its address, read from `/proc` and `/etc`.

use std::net::IpAddr;

/// Facts about the host, as the Node's capacity and nodeInfo spell them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    pub cpus: u64,
    /// Total memory in KiB.
    pub memory_kib: u64,
    pub kernel_version: String,
    pub os_image: String,
    pub machine_id: String,
    pub boot_id: String,
    pub address: IpAddr,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// `MemTotal` of `/proc/meminfo`, in KiB.
pub fn mem_total_kib(meminfo: &str) -> Option<u64> {
    meminfo_kib(meminfo, "MemTotal:")
}

/// A `/proc/meminfo` field (`MemTotal:`, `MemAvailable:` …) in KiB.
pub fn meminfo_kib(meminfo: &str, field: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// `PRETTY_NAME` of an os-release file.
pub fn pretty_name(os_release: &str) -> Option<String> {
    os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_owned())
}

impl HostInfo {
    /// Reads this machine; `address` is the IP the agent reports as InternalIP.
    pub fn read(address: IpAddr) -> HostInfo {
        HostInfo {
            cpus: std::thread::available_parallelism()
                .map(|n| n.get() as u64)
                .unwrap_or(1),
            memory_kib: mem_total_kib(&read("/proc/meminfo")).unwrap_or(0),
            kernel_version: read("/proc/sys/kernel/osrelease"),
            os_image: pretty_name(&read("/etc/os-release")).unwrap_or_else(|| "Linux".into()),
            machine_id: read("/etc/machine-id"),
            boot_id: read("/proc/sys/kernel/random/boot_id"),
            address,
        }
    }
}

/// This machine's architecture as Go (and so Kubernetes) spells it.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_and_os_release_are_read() {
        let meminfo = "MemTotal:       24576000 kB\nMemFree:         1000 kB\n";
        assert_eq!(mem_total_kib(meminfo), Some(24_576_000));
        assert_eq!(mem_total_kib("nothing"), None);
        let os = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(
            pretty_name(os).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
    }
}

/// Resource pressure on the node, by the kubelet's default hard eviction thresholds
/// (`memory.available<100Mi`, `nodefs.available<10%`; no PID threshold by default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pressure {
    pub memory: bool,
    pub disk: bool,
    pub pid: bool,
}

/// The smallest free memory before MemoryPressure.
pub const MEMORY_AVAILABLE_MIN: u64 = 100 * 1024 * 1024;

/// `MemAvailable` in bytes from `/proc/meminfo` text.
pub fn mem_available(meminfo: &str) -> Option<u64> {
    meminfo_kib(meminfo, "MemAvailable:").map(|kib| kib * 1024)
}

impl Pressure {
    /// The pressure now, the disk judged on the file system holding `root`.
    pub fn read(root: &std::path::Path) -> Pressure {
        let memory = mem_available(&read("/proc/meminfo"))
            .is_some_and(|available| available < MEMORY_AVAILABLE_MIN);
        let disk = rustix::fs::statvfs(root)
            .ok()
            .filter(|v| v.f_blocks > 0)
            .is_some_and(|v| v.f_bavail * 10 < v.f_blocks);
        Pressure {
            memory,
            disk,
            pid: false,
        }
    }
}
