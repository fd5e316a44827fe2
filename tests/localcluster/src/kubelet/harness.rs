//! Running a kubelet from a test: claim a cluster index (flock on `/tmp/localcluster-N.lock`),
//! start the binary, wait until it serves, stop it on drop; and print the pods' logs.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The first free index 0..=99, held while the returned file stays open.
pub fn claim_index() -> std::io::Result<(u8, File)> {
    for index in 0..=99u8 {
        let file = File::create(format!("/tmp/localcluster-{index}.lock"))?;
        if file.try_lock().is_ok() {
            return Ok((index, file));
        }
    }
    Err(std::io::Error::other("all 100 local cluster indexes are in use"))
}

pub struct KubeletProcess {
    child: Child,
    _lock: File,
    pub index: u8,
    pub state_dir: PathBuf,
    pub cadvisor_port: u16,
}

impl KubeletProcess {
    /// Starts `binary` against `kubeconfig` and waits (up to 30 s) until it has registered.
    pub fn start(binary: &Path, kubeconfig: &Path, state_dir: &Path, bin_dir: &Path) -> std::io::Result<Self> {
        let (index, lock) = claim_index()?;
        std::fs::create_dir_all(state_dir)?;
        let log = File::create(state_dir.join("kubelet.log"))?;
        let child = Command::new(binary)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--state-dir")
            .arg(state_dir)
            .args(["--index", &index.to_string()])
            .arg("--bin-dir")
            .arg(bin_dir)
            .env("RUST_LOG", "info,kube=warn")
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()?;
        let mut started = Self { child, _lock: lock, index, state_dir: state_dir.to_path_buf(), cadvisor_port: 0 };
        let deadline = Instant::now() + Duration::from_secs(30);
        let port_file = state_dir.join("kubelet.port");
        while Instant::now() < deadline {
            if let Some(port) = std::fs::read_to_string(&port_file).ok().and_then(|p| p.trim().parse().ok()) {
                started.cadvisor_port = port;
                return Ok(started);
            }
            if let Ok(Some(status)) = started.child.try_wait() {
                return Err(std::io::Error::other(format!("kubelet exited with {status}: {}", logs(state_dir))));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(std::io::Error::other(format!("kubelet not serving after 30 s: {}", logs(state_dir))))
    }

    /// Stops the kubelet as a node shutdown does (SIGTERM), waiting for its cleanup.
    pub fn stop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for KubeletProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Every container log under the state dir and the kubelet's own log, for a failing test.
pub fn logs(state_dir: &Path) -> String {
    let mut out = String::new();
    let mut files = Vec::new();
    if let Ok(pods) = std::fs::read_dir(state_dir.join("pods")) {
        for pod in pods.flatten() {
            for container in std::fs::read_dir(pod.path()).into_iter().flatten().flatten() {
                for log in std::fs::read_dir(container.path()).into_iter().flatten().flatten() {
                    if log.path().extension().is_some_and(|e| e == "log") {
                        files.push(log.path());
                    }
                }
            }
        }
    }
    files.sort();
    files.push(state_dir.join("kubelet.log"));
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(60).collect();
        out.push_str(&format!("==> {} <==\n", file.display()));
        for line in tail.into_iter().rev() {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}
