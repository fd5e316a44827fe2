//! A real PostgreSQL server (Debian's `postgresql`) on a free loopback port, its cluster in a temp
//! dir, with trust authentication on loopback and durability off (tests need speed, not crashes).

use std::path::Path;

use anyhow::{bail, Context as _, Result};
use tempfile::TempDir;

use crate::prometheus::free_port;
use crate::service::{command_as_postgres, hand_to_postgres, run_to_success, Recipe, Service};

pub const USER: &str = "risk";
pub const DATABASE: &str = "risk";

pub struct Postgres {
    pub service: Service,
    dir: TempDir,
}

pub(crate) fn bin_dir() -> Result<&'static str> {
    ["/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin"]
        .into_iter()
        .find(|d| Path::new(d).join("postgres").exists())
        .context("PostgreSQL is not installed: run scripts/install-deps.sh")
}

impl Postgres {
    /// Creates a cluster with the role and database `risk` and starts it.
    pub fn start() -> Result<Self> {
        Self::start_with(None)
    }

    /// Like [`Postgres::start`], but the role `risk` has `password` and every connection must
    /// give it (scram-sha-256), as a user's server would.
    pub fn start_with_password(password: &str) -> Result<Self> {
        Self::start_with(Some(password))
    }

    fn start_with(password: Option<&str>) -> Result<Self> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new().prefix("postgres-").tempdir()?;
        hand_to_postgres(dir.path())?;
        let data = dir.path().join("data");
        let mut initdb = command_as_postgres(&format!("{bin}/initdb"));
        initdb.args(["-U", USER, "-E", "UTF8", "--no-sync"]);
        match password {
            Some(pw) => {
                let file = dir.path().join("password");
                std::fs::write(&file, pw)?;
                hand_to_postgres(&file)?;
                initdb.args(["-A", "scram-sha-256"]).arg(format!("--pwfile={}", file.display()));
            }
            None => {
                initdb.args(["-A", "trust"]);
            }
        }
        run_to_success(initdb.arg("-D").arg(&data), "initdb")?;
        let port = free_port()?;
        let service = Service::start(recipe(bin, dir.path(), port, &[]))?;
        let pg = Self { service, dir };
        pg.create_database(password)?;
        Ok(pg)
    }

    fn create_database(&self, password: Option<&str>) -> Result<()> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let out = std::process::Command::new("psql")
                .env("PGPASSWORD", password.unwrap_or_default())
                .args(["-h", "127.0.0.1", "-p", &self.service.port().to_string(), "-U", USER, "-d", "postgres"])
                .args(["-v", "ON_ERROR_STOP=1", "-qc", &format!("CREATE DATABASE {DATABASE}")])
                .output()
                .context("running psql")?;
            if out.status.success() {
                return Ok(());
            }
            // The port accepts before the server takes connections ("starting up").
            if std::time::Instant::now() > deadline {
                bail!("creating the database failed: {}", String::from_utf8_lossy(&out.stderr));
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    pub fn port(&self) -> u16 {
        self.service.port()
    }

    /// The server's log so far (warnings and errors it reported to clients are in it).
    pub fn log(&self) -> Result<String> {
        let path = self.dir.path().join("postgres.log");
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    }

    /// A direct connection URL (migrations need session features PgBouncer does not keep).
    pub fn url(&self) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{DATABASE}", self.port())
    }
}

/// How to run a server on the cluster in `dir/data`, logging to `dir/postgres.log`; `extra` are
/// further settings (a standby's).
pub(crate) fn recipe(bin: &str, dir: &Path, port: u16, extra: &[&str]) -> Recipe {
    let log_dir = format!("log_directory={}", dir.display());
    let settings = [
        "listen_addresses=127.0.0.1",
        // The server's log is kept so tests can assert on what PostgreSQL itself reported.
        "logging_collector=on",
        log_dir.as_str(),
        "log_filename=postgres.log",
        "fsync=off",
        "synchronous_commit=off",
        "full_page_writes=off",
        "max_connections=300",
        "shared_buffers=128MB",
    ];
    let data = dir.join("data");
    let mut args = vec!["-D".to_owned(), data.display().to_string(), "-p".to_owned(), port.to_string()];
    args.extend(["-k".to_owned(), dir.display().to_string()]);
    for s in settings.iter().chain(extra) {
        args.extend(["-c".to_owned(), (*s).to_owned()]);
    }
    Recipe { name: "postgres", program: format!("{bin}/postgres"), args, port, unprivileged: true, stop_signal: "INT" }
}
