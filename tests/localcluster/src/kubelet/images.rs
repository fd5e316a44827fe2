//! The image table: which local program stands in for each container image, with the image's
//! entrypoint, default arguments and default user.

use std::path::Path;

/// What a container runtime reads from an image's config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// The image's `USER` as (uid, gid).
    pub uid: i64,
    pub gid: i64,
    /// Program paths inside the real image mapped to local programs, so an explicit `command`
    /// naming the image's binary still runs.
    pub aliases: Vec<(String, String)>,
}

/// The repository part of an image reference: without `@digest` and without a `:tag`.
pub fn repository(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    match image.rfind(':') {
        Some(colon) if !image[colon..].contains('/') => &image[..colon],
        _ => image,
    }
}

fn normalise(repo: &str) -> &str {
    repo.strip_prefix("docker.io/library/").or_else(|| repo.strip_prefix("docker.io/")).unwrap_or(repo)
}

fn workspace_binary(bin_dir: &Path, name: &str, cmd: &[&str]) -> Image {
    let local = bin_dir.join(name).display().to_string();
    Image {
        entrypoint: vec![local.clone()],
        cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
        // distroless `nonroot`, as the project's Dockerfiles say (USER 65532:65532)
        uid: 65532,
        gid: 65532,
        aliases: vec![(format!("/usr/local/bin/{name}"), local.clone()), (name.to_owned(), local)],
    }
}

fn debian_program(cmd: &[&str], uid: i64, aliases: &[(&str, &str)]) -> Image {
    Image {
        entrypoint: Vec::new(),
        cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
        uid,
        gid: uid,
        aliases: aliases.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect(),
    }
}

/// The local stand-in for `image` (any tag), or `None`: the image cannot be "pulled".
pub fn resolve(image: &str, bin_dir: &Path) -> Option<Image> {
    match normalise(repository(image)) {
        "ghcr.io/riskplatform/riskplatform-api" => Some(workspace_binary(bin_dir, "riskplatform-api", &["serve"])),
        "ghcr.io/riskplatform/riskplatform-operator" => {
            Some(workspace_binary(bin_dir, "riskplatform-operator", &["run"]))
        }
        "localcluster.test/echo" => {
            let mut echo = workspace_binary(bin_dir, "lc-echo", &[]);
            // test images such as agnhost run as root unless told otherwise
            echo.uid = 0;
            echo.gid = 0;
            Some(echo)
        }
        // the official image starts as root and its entrypoint drops to `redis`; here the pod's
        // securityContext decides, as the operator always sets one
        "redis" => {
            Some(debian_program(&["redis-server"], 0, &[("/usr/local/bin/redis-server", "/usr/bin/redis-server")]))
        }
        // edoburu/pgbouncer: USER postgres (uid 70), CMD pgbouncer with its ini
        "edoburu/pgbouncer" => Some(debian_program(
            &["/usr/sbin/pgbouncer", "/etc/pgbouncer/pgbouncer.ini"],
            70,
            &[("/usr/bin/pgbouncer", "/usr/sbin/pgbouncer")],
        )),
        // oliver006/redis_exporter: USER 59000, ENTRYPOINT /redis_exporter; Debian packages the
        // same program, configured by the same REDIS_* variables
        "oliver006/redis_exporter" => Some(Image {
            entrypoint: vec!["/usr/bin/prometheus-redis-exporter".to_owned()],
            ..debian_program(&[], 59000, &[("/redis_exporter", "/usr/bin/prometheus-redis-exporter")])
        }),
        "busybox" | "debian" | "localcluster.test/shell" => Some(debian_program(&["/bin/sh"], 0, &[])),
        _ => None,
    }
}

/// The argv a runtime starts: `command` replaces the entrypoint (and drops the image's CMD),
/// `args` replace the CMD; argv[0] naming the real image's binary is mapped to the local one.
pub fn argv(image: &Image, command: &[String], args: Option<&[String]>) -> Vec<String> {
    let mut argv: Vec<String> = if command.is_empty() {
        let mut v = image.entrypoint.clone();
        v.extend(args.map(<[String]>::to_vec).unwrap_or_else(|| image.cmd.clone()));
        v
    } else {
        let mut v = command.to_vec();
        v.extend(args.unwrap_or_default().iter().cloned());
        v
    };
    if let Some(first) = argv.first_mut() {
        if let Some((_, local)) = image.aliases.iter().find(|(alias, _)| alias == first) {
            *first = local.clone();
        }
    }
    argv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_or_digest_does_not_change_the_repository() {
        for (image, repo) in [
            ("redis:7.2-alpine", "redis"),
            ("localhost:5000/x/y:1", "localhost:5000/x/y"),
            ("localhost:5000/x/y", "localhost:5000/x/y"),
            ("ghcr.io/a/b@sha256:abc", "ghcr.io/a/b"),
            ("ghcr.io/a/b:1.0@sha256:abc", "ghcr.io/a/b"),
        ] {
            assert_eq!(repository(image), repo, "{image}");
        }
    }

    #[test]
    fn the_platform_images_map_to_workspace_binaries_and_debian_programs() {
        let bin = Path::new("/b");
        let api = resolve("ghcr.io/riskplatform/riskplatform-api:0.1.0", bin).expect("api image");
        assert_eq!(argv(&api, &[], Some(&["worker".to_owned()])), ["/b/riskplatform-api", "worker"]);
        assert_eq!(argv(&api, &[], None), ["/b/riskplatform-api", "serve"]);
        let redis = resolve("redis:7.2-alpine", bin).expect("redis image");
        assert_eq!(
            argv(&redis, &["redis-server".to_owned()], Some(&["/etc/redis.conf".to_owned()])),
            ["redis-server", "/etc/redis.conf"]
        );
        let pgb = resolve("docker.io/edoburu/pgbouncer:v1.18.0-p0", bin).expect("pgbouncer image");
        assert_eq!(argv(&pgb, &["/usr/bin/pgbouncer".to_owned()], None), ["/usr/sbin/pgbouncer"]);
        let exporter = resolve("oliver006/redis_exporter:v1.45.0", bin).expect("redis_exporter image");
        assert_eq!(argv(&exporter, &[], None), ["/usr/bin/prometheus-redis-exporter"]);
        assert_eq!(argv(&exporter, &["/redis_exporter".to_owned()], None), ["/usr/bin/prometheus-redis-exporter"]);
        assert!(resolve("ghcr.io/riskplatform/riskplatform-operator:0.1.0", bin).is_some());
    }

    #[test]
    fn an_image_outside_the_table_cannot_be_pulled() {
        assert_eq!(resolve("example.com/nope:1", Path::new("/b")), None);
    }
}
