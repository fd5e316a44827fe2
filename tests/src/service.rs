//! A server process the harness can stop and start again on the same port (for fault injection),
//! run as the `postgres` user when the tests run as root (PostgreSQL and PgBouncer refuse root).

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

/// How to launch one server: program, arguments and the loopback port it listens on.
#[derive(Clone, Debug)]
pub struct Recipe {
    pub name: &'static str,
    pub program: String,
    pub args: Vec<String>,
    pub port: u16,
    /// Drop root privileges to the `postgres` user before exec.
    pub unprivileged: bool,
    /// The signal that stops it promptly (PostgreSQL's SIGTERM waits for clients to leave).
    pub stop_signal: &'static str,
}

pub struct Service {
    recipe: Recipe,
    child: Option<Child>,
}

fn running_as_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

/// Gives a directory to the `postgres` user when the tests run as root, so the servers that drop
/// privileges can write their data and sockets there.
pub fn hand_to_postgres(dir: &Path) -> Result<()> {
    if running_as_root() {
        let status = Command::new("chown").arg("-R").arg("postgres:postgres").arg(dir).status()?;
        if !status.success() {
            bail!("chown postgres {} failed (is the postgresql package installed?)", dir.display());
        }
    }
    Ok(())
}

/// A command that runs `program` as `postgres` when we are root; setpriv execs in place, so the
/// child's pid is the server's and signals reach it.
pub fn command_as_postgres(program: &str) -> Command {
    if running_as_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=postgres", "--regid=postgres", "--init-groups", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// Runs `command` to completion; an error names `what` and carries the program's stderr.
pub fn run_to_success(command: &mut Command, what: &str) -> Result<()> {
    let out = command.stdin(Stdio::null()).output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

pub fn wait_for_port(port: u16, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("nothing listens on 127.0.0.1:{port} after {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

impl Service {
    pub fn start(recipe: Recipe) -> Result<Self> {
        let mut service = Self { recipe, child: None };
        service.resume()?;
        Ok(service)
    }

    pub fn port(&self) -> u16 {
        self.recipe.port
    }

    /// Starts the server again after [`Service::stop`] and waits until its port accepts.
    pub fn resume(&mut self) -> Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let r = &self.recipe;
        let mut command = if r.unprivileged { command_as_postgres(&r.program) } else { Command::new(&r.program) };
        command.args(&r.args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let child = command.spawn().with_context(|| format!("starting {} ({})", r.name, r.program))?;
        self.child = Some(child);
        wait_for_port(r.port, Duration::from_secs(30)).with_context(|| format!("{} did not start", r.name))
    }

    /// Kills the server with SIGKILL (a crash: no shutdown work) and waits until it has exited.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Stops the server (its stop signal, SIGKILL after 10 s) and waits until it has exited.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        let _ = Command::new("kill").arg(format!("-{}", self.recipe.stop_signal)).arg(child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                child.kill()?;
                child.wait()?;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
