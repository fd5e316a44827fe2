//! Resource limits and usage through cgroup v1 (this machine mounts the memory, cpu and cpuacct
//! controllers as v1 hierarchies; the unified hierarchy has no controllers): one cgroup per pod
//! and per container under `localcluster-N/`.

use std::path::{Path, PathBuf};

use super::error::{Error, Result};

const ROOT: &str = "/sys/fs/cgroup";
const CONTROLLERS: [&str; 3] = ["memory", "cpu", "cpuacct"];
/// The CFS period the kubelet uses (100 ms).
pub const CFS_PERIOD_US: u64 = 100_000;

/// A cgroup path relative to each controller's root.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cgroup(pub PathBuf);

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    pub cpu_cores: Option<f64>,
    pub memory_bytes: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub cpu_seconds: f64,
    pub memory_usage: u64,
    pub working_set: u64,
    pub rss: u64,
    pub oom_kills: u64,
}

impl Cgroup {
    pub fn node(index: u8) -> Self {
        Self(PathBuf::from(format!("localcluster-{index}")))
    }
    pub fn child(&self, name: &str) -> Self {
        Self(self.0.join(name))
    }
    fn dir(&self, controller: &str) -> PathBuf {
        Path::new(ROOT).join(controller).join(&self.0)
    }
    /// The `cgroup.procs` files a process writes its pid to in order to join.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        CONTROLLERS.iter().map(|c| self.dir(c).join("cgroup.procs")).collect()
    }

    pub fn create(&self, limits: Limits) -> Result<()> {
        for c in CONTROLLERS {
            let dir = self.dir(c);
            std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating cgroup {}", dir.display())))?;
        }
        let write = |controller: &str, file: &str, value: String| {
            let path = self.dir(controller).join(file);
            std::fs::write(&path, value).map_err(Error::io(format!("writing {}", path.display())))
        };
        if let Some(bytes) = limits.memory_bytes {
            write("memory", "memory.limit_in_bytes", bytes.to_string())?;
            // no swap, as a node with swap disabled; the file exists only with swap accounting
            if self.dir("memory").join("memory.memsw.limit_in_bytes").exists() {
                write("memory", "memory.memsw.limit_in_bytes", bytes.to_string())?;
            }
        }
        if let Some(cores) = limits.cpu_cores {
            write("cpu", "cpu.cfs_period_us", CFS_PERIOD_US.to_string())?;
            // the kernel's minimum quota is 1 ms
            write("cpu", "cpu.cfs_quota_us", ((cores * CFS_PERIOD_US as f64).ceil() as u64).max(1000).to_string())?;
        }
        Ok(())
    }

    fn read(&self, controller: &str, file: &str) -> Option<String> {
        std::fs::read_to_string(self.dir(controller).join(file)).ok()
    }

    pub fn usage(&self) -> Option<Usage> {
        let number = |c: &str, f: &str| self.read(c, f).and_then(|s| s.trim().parse::<u64>().ok());
        let stat = self.read("memory", "memory.stat").unwrap_or_default();
        let field = |text: &str, key: &str| {
            text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse::<u64>().ok()).unwrap_or(0)
        };
        let memory_usage = number("memory", "memory.usage_in_bytes")?;
        let inactive = field(&stat, "total_inactive_file");
        Some(Usage {
            cpu_seconds: number("cpuacct", "cpuacct.usage").unwrap_or(0) as f64 / 1e9,
            memory_usage,
            working_set: memory_usage.saturating_sub(inactive),
            rss: field(&stat, "total_rss"),
            oom_kills: field(&self.read("memory", "memory.oom_control").unwrap_or_default(), "oom_kill"),
        })
    }

    pub fn limits(&self) -> (Option<i64>, Option<u64>) {
        let quota = self.read("cpu", "cpu.cfs_quota_us").and_then(|s| s.trim().parse::<i64>().ok()).filter(|q| *q > 0);
        let memory = self
            .read("memory", "memory.limit_in_bytes")
            .and_then(|s| s.trim().parse::<u64>().ok())
            .filter(|m| *m < (1 << 62));
        (quota, memory)
    }

    /// Every process in the cgroup (and its children), for the final SIGKILL.
    pub fn pids(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        let mut stack = vec![self.dir("memory")];
        while let Some(dir) = stack.pop() {
            if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
            if let Ok(entries) = std::fs::read_dir(&dir) {
                stack.extend(entries.flatten().filter(|e| e.path().is_dir()).map(|e| e.path()));
            }
        }
        pids
    }

    /// Removes the cgroup and its children, deepest first; a cgroup with processes stays.
    pub fn remove(&self) {
        for c in CONTROLLERS {
            remove_tree(&self.dir(c));
        }
    }
}

fn remove_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten().filter(|e| e.path().is_dir()) {
            remove_tree(&entry.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}
