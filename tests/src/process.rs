//! Child processes of the workspace's own binaries, killed when the test drops them.

use std::path::PathBuf;
use std::process::{Child, Command};

use anyhow::{ensure, Context as _, Result};

/// Path of a workspace binary built next to the running test (`target/<profile>/<name>`);
/// `cargo nextest run --workspace` builds every binary before running tests.
pub fn binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // Test executables live in target/<profile>/deps, the harness's own binaries in target/<profile>.
    let dir = exe.parent().context("directory of the running executable")?;
    let profile_dir = if dir.ends_with("deps") { dir.parent().context("target directory of the test")? } else { dir };
    let path = profile_dir.join(name);
    ensure!(path.exists(), "{} is not built: run `cargo build --workspace --bins` first", path.display());
    Ok(path)
}

/// A running child process, SIGKILLed on drop.
pub struct ChildProcess {
    child: Option<Child>,
}

impl ChildProcess {
    pub fn spawn(command: &mut Command) -> Result<Self> {
        Ok(Self { child: Some(command.spawn().with_context(|| format!("spawning {command:?}"))?) })
    }

    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Asks the process to stop (SIGTERM, as Kubernetes does) and waits up to `within` for it to
    /// exit; returns whether it exited successfully in time.
    pub fn terminate(&mut self, within: std::time::Duration) -> Result<bool> {
        let Some(mut child) = self.child.take() else { return Ok(false) };
        Command::new("kill").arg("-TERM").arg(child.id().to_string()).status()?;
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status.success());
            }
            if std::time::Instant::now() > deadline {
                child.kill()?;
                child.wait()?;
                return Ok(false);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Kills the process at once (SIGKILL), as a crashed node would.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}
