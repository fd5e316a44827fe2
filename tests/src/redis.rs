//! A real Redis server (Debian's `redis-server`) on a free loopback port with persistence off and
//! the operator's eviction settings (or a smaller memory limit and another policy, for eviction
//! tests, or a whole redis.conf as the operator writes it). Without persistence, a restart on the
//! same port comes back empty.

use anyhow::Result;
use tempfile::TempDir;

use crate::prometheus::free_port;
use crate::service::{Recipe, Service};

pub struct Redis {
    pub service: Service,
    _dir: TempDir,
}

/// The managed Redis's documented defaults (see `crd-types`).
pub const MAXMEMORY: &str = "1gb";
pub const POLICY: &str = "volatile-lru";

impl Redis {
    pub fn start() -> Result<Self> {
        Self::start_with(MAXMEMORY, POLICY)
    }

    /// A Redis with its own `maxmemory` and `maxmemory-policy`.
    pub fn start_with(maxmemory: &str, policy: &str) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("redis-").tempdir()?;
        let port = free_port()?;
        let args = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--maxmemory",
            maxmemory,
            "--maxmemory-policy",
            policy,
            "--dir",
            &dir.path().display().to_string(),
        ]
        .map(str::to_owned)
        .to_vec();
        Self::run(dir, port, args)
    }

    /// A Redis running `conf` (a redis.conf as the operator writes it) with the test's port,
    /// bind address and data directory: the first two on the command line, which overrides the
    /// file; the directory in the file, since Redis enters it as it reads the `dir` line (the
    /// pod's volume path does not exist here).
    pub fn start_with_conf(conf: &str) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("redis-").tempdir()?;
        let port = free_port()?;
        let data = dir.path().join("data");
        std::fs::create_dir(&data)?;
        let conf: String = conf
            .lines()
            .map(|l| if l.starts_with("dir ") { format!("dir {}\n", data.display()) } else { format!("{l}\n") })
            .collect();
        let conf_path = dir.path().join("redis.conf");
        std::fs::write(&conf_path, conf)?;
        let args = vec![
            conf_path.display().to_string(),
            "--port".to_owned(),
            port.to_string(),
            "--bind".to_owned(),
            "127.0.0.1".to_owned(),
        ];
        Self::run(dir, port, args)
    }

    /// Starts `redis-server args` listening on `port`, its files in `dir`.
    fn run(dir: TempDir, port: u16, args: Vec<String>) -> Result<Self> {
        let service = Service::start(Recipe {
            name: "redis",
            program: "redis-server".to_owned(),
            args,
            port,
            unprivileged: false,
            stop_signal: "TERM",
        })?;
        Ok(Self { service, _dir: dir })
    }

    pub fn port(&self) -> u16 {
        self.service.port()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port())
    }
}
