//! A real PostgreSQL streaming replica of a test [`Postgres`]: `pg_basebackup -R` from the
//! primary into a temp dir, then a hot standby on a free loopback port that logs every statement
//! (so tests can tell which server answered a read).

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use tempfile::TempDir;

use crate::postgres::{bin_dir, recipe, Postgres, DATABASE, USER};
use crate::prometheus::free_port;
use crate::service::{command_as_postgres, hand_to_postgres, run_to_success, Service};

pub struct Standby {
    pub service: Service,
    dir: TempDir,
}

impl Standby {
    /// Copies the primary with `pg_basebackup` (WAL streamed, recovery settings written) and
    /// starts the copy as a hot standby; returns once it answers queries.
    pub fn start(primary: &Postgres) -> Result<Self> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new().prefix("standby-").tempdir()?;
        hand_to_postgres(dir.path())?;
        run_to_success(
            command_as_postgres(&format!("{bin}/pg_basebackup"))
                .args(["-h", "127.0.0.1", "-p", &primary.port().to_string(), "-U", USER])
                .args(["-X", "stream", "-R", "--no-sync", "-c", "fast", "-D"])
                .arg(dir.path().join("data")),
            "pg_basebackup",
        )?;
        let port = free_port()?;
        // Statements are logged so a test can see the reads it sent land here; feedback keeps
        // the primary's vacuum from cancelling them.
        let extra = ["hot_standby=on", "hot_standby_feedback=on", "log_statement=all"];
        let service = Service::start(recipe(bin, dir.path(), port, &extra))?;
        let standby = Self { service, dir };
        standby.wait_until_ready()?;
        Ok(standby)
    }

    /// The port accepts before a standby reaches a consistent state and takes read-only sessions.
    fn wait_until_ready(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.psql("SELECT pg_is_in_recovery()") {
                Ok(out) if out == "t" => return Ok(()),
                Ok(out) => bail!("the standby is not in recovery: {out}"),
                Err(e) if Instant::now() > deadline => return Err(e.context("the standby did not become ready")),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Runs one statement on the standby with psql and returns its unaligned output.
    pub fn psql(&self, sql: &str) -> Result<String> {
        psql(self.port(), sql)
    }

    /// Waits until the standby has replayed everything the primary has written so far.
    pub fn catch_up(&self, primary: &Postgres) -> Result<()> {
        let lsn = psql(primary.port(), "SELECT pg_current_wal_lsn()")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.psql(&format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'"))? != "t" {
            if Instant::now() > deadline {
                bail!("the standby did not replay the primary's WAL up to {lsn}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    pub fn port(&self) -> u16 {
        self.service.port()
    }

    /// The standby's log so far: with `log_statement=all`, every statement it ran.
    pub fn log(&self) -> Result<String> {
        let path = self.dir.path().join("postgres.log");
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    }

    /// Stops applying WAL (it still receives it), so the standby falls behind the primary.
    pub fn pause_replay(&self) -> Result<()> {
        self.psql("SELECT pg_wal_replay_pause()").map(drop)
    }

    pub fn resume_replay(&self) -> Result<()> {
        self.psql("SELECT pg_wal_replay_resume()").map(drop)
    }

    /// Cuts the standby off from its primary (no `primary_conninfo`: its WAL receiver stops) while
    /// it keeps serving reads.
    pub fn disconnect(&self) -> Result<()> {
        self.psql("ALTER SYSTEM SET primary_conninfo = ''")?;
        self.psql("SELECT pg_reload_conf()").map(drop)
    }
}

fn psql(port: u16, sql: &str) -> Result<String> {
    let out = std::process::Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", USER, "-d", DATABASE])
        .args(["-v", "ON_ERROR_STOP=1", "-XAtqc", sql])
        .output()
        .context("running psql")?;
    if !out.status.success() {
        bail!("psql on port {port} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}
