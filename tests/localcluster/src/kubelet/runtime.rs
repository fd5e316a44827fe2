//! Starting a container as a real process: joined to the pod's network namespace, in its own
//! mount, UTS and IPC namespaces, its root an overlay of the host's `/` with the volumes bound
//! at their mount paths, in its cgroups, as its user with its capabilities (util-linux tools:
//! nsenter, unshare, mount, chroot, setpriv).

use std::path::PathBuf;
use std::process::Stdio;

use tokio::process::{Child, Command};

use super::cgroup::Cgroup;
use super::error::{Error, Result};
use super::security::{setpriv_args, Identity};

/// A path bound into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    /// Absolute path inside the container.
    pub target: String,
    pub read_only: bool,
    pub file: bool,
}

#[derive(Debug, Clone)]
pub struct Launch {
    pub netns: String,
    pub hostname: String,
    pub cgroup: Cgroup,
    /// Holds `upper/`, `work/` and `rootfs/` of the overlay.
    pub dir: PathBuf,
    pub mounts: Vec<BindMount>,
    pub identity: Identity,
    pub workdir: String,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub log: PathBuf,
}

/// Single-quotes a word for sh.
fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `target` with its symlinks resolved as the container will see them: its root is an overlay
/// of the host's `/`, so the host resolves them identically (`/var/run` -> `/run` on Debian);
/// left unresolved, `mount` would follow an absolute symlink out of the container's root.
pub fn resolve_in_root(target: &str) -> String {
    let path = std::path::Path::new(target);
    for existing in path.ancestors() {
        if let Ok(real) = std::fs::canonicalize(existing) {
            return match path.strip_prefix(existing) {
                Ok(rest) if !rest.as_os_str().is_empty() => real.join(rest).display().to_string(),
                _ => real.display().to_string(),
            };
        }
    }
    target.to_owned()
}

/// The script run inside the new namespaces before the program replaces it (same pid).
pub fn script(l: &Launch) -> String {
    let root = l.dir.join("rootfs").display().to_string();
    let mut s = String::from("set -e\n");
    for procs in l.cgroup.procs_files() {
        s.push_str(&format!("echo $$ > {}\n", q(&procs.display().to_string())));
    }
    s.push_str(&format!("/usr/bin/hostname {}\n", q(&l.hostname)));
    s.push_str(&format!(
        "/usr/bin/mount -t overlay overlay -o lowerdir=/,upperdir={},workdir={} {}\n",
        l.dir.join("upper").display(),
        l.dir.join("work").display(),
        q(&root)
    ));
    for d in ["dev", "proc", "sys"] {
        s.push_str(&format!("/usr/bin/mount --rbind /{d} {}\n", q(&format!("{root}/{d}"))));
    }
    let mut mounts = l.mounts.clone();
    // parents before the volumes mounted inside them
    mounts.sort_by_key(|m| m.target.matches('/').count());
    for m in &mounts {
        let target = q(&format!("{root}{}", resolve_in_root(&m.target)));
        if m.file {
            s.push_str(&format!(
                "[ -e {target} ] || {{ /usr/bin/mkdir -p \"$(/usr/bin/dirname {target})\"; : > {target}; }}\n"
            ));
        } else {
            s.push_str(&format!("/usr/bin/mkdir -p {target}\n"));
        }
        s.push_str(&format!("/usr/bin/mount --bind {} {target}\n", q(&m.source.display().to_string())));
        if m.read_only {
            s.push_str(&format!("/usr/bin/mount -o remount,bind,ro {target}\n"));
        }
    }
    s.push_str(&format!("/usr/bin/mkdir -p {}\n", q(&format!("{root}{}", l.workdir))));
    if l.identity.read_only_root {
        s.push_str(&format!("/usr/bin/mount -o remount,bind,ro {}\n", q(&root)));
    }
    let mut exec = vec!["exec".to_owned(), "/usr/sbin/chroot".to_owned(), q(&root), "/usr/bin/setpriv".to_owned()];
    exec.extend(setpriv_args(&l.identity).iter().map(|a| q(a)));
    exec.extend(["--".to_owned(), "/bin/sh".to_owned(), "-c".to_owned(), q("cd \"$0\" && exec \"$@\""), q(&l.workdir)]);
    exec.extend(l.argv.iter().map(|a| q(a)));
    s.push_str(&exec.join(" "));
    s.push('\n');
    s
}

/// Starts the container; its stdout and stderr go to the log file.
pub fn spawn(l: &Launch) -> Result<Child> {
    for sub in ["upper", "work", "rootfs"] {
        let dir = l.dir.join(sub);
        std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    }
    if let Some(parent) = l.log.parent() {
        std::fs::create_dir_all(parent).map_err(Error::io(format!("creating {}", parent.display())))?;
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&l.log)
        .map_err(Error::io(format!("opening {}", l.log.display())))?;
    let err = log.try_clone().map_err(Error::io("duplicating the log file"))?;
    Command::new("/usr/bin/nsenter")
        .arg(format!("--net=/run/netns/{}", l.netns))
        .args([
            "--",
            "/usr/bin/unshare",
            "--mount",
            "--uts",
            "--ipc",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
        ])
        .arg(script(l))
        .env_clear()
        .envs(l.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(err))
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(Error::io("starting the container"))
}

/// Runs `command` inside a running container (exec probes), as its user, with a timeout.
pub async fn exec(
    pid: u32,
    identity: &Identity,
    env: &[(String, String)],
    command: &[String],
    timeout: std::time::Duration,
) -> bool {
    let mut cmd = Command::new("/usr/bin/nsenter");
    cmd.arg(format!("--target={pid}"))
        .args(["--mount", "--uts", "--ipc", "--net", "--root", "--wd", "--", "/usr/bin/setpriv"])
        .args(setpriv_args(identity))
        .arg("--")
        .args(command)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    match cmd.spawn() {
        Ok(mut child) => {
            matches!(tokio::time::timeout(timeout, child.wait()).await, Ok(Ok(status)) if status.success())
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_mounts_volumes_read_only_and_ends_by_becoming_the_program() {
        let id = Identity {
            uid: 1000,
            gid: 1000,
            groups: vec![],
            capabilities: vec![],
            no_new_privs: true,
            read_only_root: true,
        };
        let l = Launch {
            netns: "lc0-2".into(),
            hostname: "web".into(),
            cgroup: Cgroup::node(0).child("pod"),
            dir: PathBuf::from("/s/c"),
            mounts: vec![BindMount { source: "/s/v".into(), target: "/etc/it's".into(), read_only: true, file: false }],
            identity: id,
            workdir: "/".into(),
            argv: vec!["echo".into(), "a b".into()],
            env: vec![],
            log: "/s/log".into(),
        };
        let s = script(&l);
        assert!(s.contains("/usr/bin/mount --bind '/s/v' '/s/c/rootfs/etc/it'\\''s'\n"));
        assert!(s.contains("/usr/bin/mount -o remount,bind,ro '/s/c/rootfs/etc/it'\\''s'\n"));
        assert!(s.contains("/usr/bin/mount -o remount,bind,ro '/s/c/rootfs'\n"));
        assert_eq!(
            resolve_in_root("/proc/self/../self/nonexistent/x"),
            format!("/proc/{}/nonexistent/x", std::process::id())
        );
        assert!(s.trim_end().ends_with("'--no-new-privs' -- /bin/sh -c 'cd \"$0\" && exec \"$@\"' '/' 'echo' 'a b'"));
    }
}
