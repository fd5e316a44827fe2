//! Volumes as the kubelet sets them up: Secret, ConfigMap and projected volumes through the
//! atomic writer (`..data` symlink to a timestamped directory, user-visible names as symlinks
//! into it), emptyDir, PVC directories, and `SetVolumeOwnership` for fsGroup.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::error::{Error, Result};

/// File mode bits ORed in by SetVolumeOwnership (`pkg/volume/volume_linux.go`).
const RW_MASK: u32 = 0o660;
const RO_MASK: u32 = 0o440;
const EXEC_MASK: u32 = 0o110;
const SETGID: u32 = 0o2000;
/// emptyDir and PVC directories are world-writable, as upstream's emptyDir `perm`.
const SHARED_DIR_MODE: u32 = 0o777;
/// The secret/configMap volume default (`defaultMode: 420`).
pub const DEFAULT_MODE: u32 = 0o644;

/// One file of a Secret, ConfigMap or projected volume: relative path -> (content, mode).
pub type Payload = BTreeMap<String, (Vec<u8>, u32)>;

/// Builds the payload from a source's data, honouring `items` (key -> path, per-item mode).
pub fn payload(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[(String, String, Option<u32>)]>,
    default_mode: u32,
) -> std::result::Result<Payload, String> {
    let mut out = Payload::new();
    match items {
        None => {
            for (key, value) in data {
                out.insert(key.clone(), (value.clone(), default_mode));
            }
        }
        Some(items) => {
            for (key, path, mode) in items {
                let value = data.get(key).ok_or_else(|| format!("references non-existent key: {key}"))?;
                out.insert(path.clone(), (value.clone(), mode.unwrap_or(default_mode)));
            }
        }
    }
    Ok(out)
}

fn io(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    Error::io(format!("{what} {}", path.display()))
}

fn current(dir: &Path) -> Option<Payload> {
    let data = dir.join("..data");
    let target = std::fs::read_link(&data).ok()?;
    let mut out = Payload::new();
    let base = dir.join(target);
    let mut stack = vec![base.clone()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).ok()?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(&base).ok()?.to_string_lossy().into_owned();
                let mode = entry.metadata().ok()?.permissions().mode() & 0o7777;
                out.insert(rel, (std::fs::read(&path).ok()?, mode));
            }
        }
    }
    Some(out)
}

/// Writes `payload` into `dir` as upstream's AtomicWriter: a new `..<timestamp>` directory,
/// `..data` switched to it by rename, then top-level symlinks; nothing when unchanged. The
/// comparison ignores the fsGroup bits, which `own` adds afterwards. Returns whether it wrote.
pub fn write_atomic(dir: &Path, payload: &Payload, fs_group: Option<u32>) -> Result<bool> {
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    let expected: Payload = payload
        .iter()
        .map(|(k, (v, m))| (k.clone(), (v.clone(), if fs_group.is_some() { m | RO_MASK } else { *m })))
        .collect();
    if current(dir).as_ref() == Some(&expected) {
        return Ok(false);
    }
    let stamp = k8s_openapi::jiff::Timestamp::now().strftime("..%Y_%m_%d_%H_%M_%S.%f").to_string();
    let ts_dir = dir.join(&stamp);
    std::fs::create_dir(&ts_dir).map_err(io("creating", &ts_dir))?;
    std::fs::set_permissions(&ts_dir, std::fs::Permissions::from_mode(0o755)).map_err(io("chmod", &ts_dir))?;
    for (rel, (content, mode)) in payload {
        let path = ts_dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
        }
        std::fs::write(&path, content).map_err(io("writing", &path))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode)).map_err(io("chmod", &path))?;
    }
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&stamp, &tmp).map_err(io("symlink", &tmp))?;
    let old = std::fs::read_link(dir.join("..data")).ok();
    std::fs::rename(&tmp, dir.join("..data")).map_err(io("renaming", &tmp))?;
    let top: std::collections::BTreeSet<String> =
        payload.keys().filter_map(|k| k.split('/').next().map(str::to_owned)).collect();
    for name in &top {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(name), &link).map_err(io("symlink", &link))?;
        }
    }
    for entry in std::fs::read_dir(dir).map_err(io("listing", dir))?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale_link = !name.starts_with("..") && !top.contains(&name);
        if stale_link {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    if let Some(old) = old.filter(|o| o.as_os_str() != stamp.as_str()) {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    if let Some(gid) = fs_group {
        own(dir, gid, true)?;
    }
    Ok(true)
}

/// SetVolumeOwnership: every file and directory group-owned by fsGroup; files get g+r (and
/// g+w unless read-only), directories also setgid and g+x; symlinks only change group.
pub fn own(dir: &Path, gid: u32, read_only: bool) -> Result<()> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).map_err(io("stat", &path))?;
        std::os::unix::fs::lchown(&path, None, Some(gid)).map_err(io("chown", &path))?;
        if meta.file_type().is_symlink() {
            continue;
        }
        let mut mask = if read_only { RO_MASK } else { RW_MASK };
        if meta.is_dir() {
            mask |= SETGID | EXEC_MASK;
            stack.extend(std::fs::read_dir(&path).map_err(io("listing", &path))?.flatten().map(|e| e.path()));
        }
        let mode = (meta.mode() & 0o7777) | mask;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).map_err(io("chmod", &path))?;
    }
    Ok(())
}

/// An emptyDir or PVC directory: created world-writable if missing, then owned by fsGroup.
pub fn shared_dir(dir: &PathBuf, fs_group: Option<u32>) -> Result<()> {
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(SHARED_DIR_MODE)).map_err(io("chmod", dir))?;
    }
    if let Some(gid) = fs_group {
        own(dir, gid, false)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec())).collect()
    }

    #[test]
    fn items_select_keys_to_paths_and_a_missing_key_is_an_error() {
        let d = data(&[("a", "1"), ("b", "2")]);
        let items = [("b".to_owned(), "sub/b.txt".to_owned(), Some(0o400))];
        let p = payload(&d, Some(&items), DEFAULT_MODE).expect("payload");
        assert_eq!(p, Payload::from([("sub/b.txt".to_owned(), (b"2".to_vec(), 0o400))]));
        let missing = [("c".to_owned(), "c".to_owned(), None)];
        assert_eq!(payload(&d, Some(&missing), DEFAULT_MODE), Err("references non-existent key: c".to_owned()));
    }

    #[test]
    fn the_atomic_writer_switches_data_and_keeps_user_paths_as_symlinks() {
        let dir = tempfile_dir();
        let first = payload(&data(&[("k", "v1"), ("gone", "x")]), None, 0o400).expect("payload");
        assert!(write_atomic(&dir, &first, None).expect("write"));
        assert!(!write_atomic(&dir, &first, None).expect("rewrite"), "an unchanged payload is not rewritten");
        assert_eq!(std::fs::read_link(dir.join("k")).expect("link"), Path::new("..data/k"));
        let second = payload(&data(&[("k", "v2")]), None, 0o400).expect("payload");
        assert!(write_atomic(&dir, &second, Some(4242)).expect("update"));
        assert_eq!(std::fs::read_to_string(dir.join("k")).expect("read"), "v2");
        assert!(std::fs::symlink_metadata(dir.join("gone")).is_err(), "a removed key disappears");
        let meta = std::fs::metadata(dir.join("k")).expect("stat");
        assert_eq!((meta.mode() & 0o7777, meta.gid()), (0o440, 4242), "fsGroup ORs g+r into 0400");
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "lc-atomic-{}-{}",
            std::process::id(),
            k8s_openapi::jiff::Timestamp::now().as_nanosecond()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }
}
