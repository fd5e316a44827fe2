//! The process identity and privileges of a container from its pod's and its own security
//! context: user, groups, runAsNonRoot, capabilities and no_new_privs, as `setpriv` arguments.

use k8s_openapi::api::core::v1::{Container, Pod};

use super::error::ConfigError;
use super::images::Image;

/// containerd's default capability set for a container.
const DEFAULT_CAPS: [&str; 14] = [
    "chown",
    "dac_override",
    "fsetid",
    "fowner",
    "mknod",
    "net_raw",
    "setgid",
    "setuid",
    "setfcap",
    "setpcap",
    "net_bind_service",
    "sys_chroot",
    "kill",
    "audit_write",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: i64,
    pub gid: i64,
    pub groups: Vec<i64>,
    pub capabilities: Vec<String>,
    pub no_new_privs: bool,
    pub read_only_root: bool,
}

/// Who the container runs as; refuses what `verifyRunAsNonRoot` refuses.
pub fn identity(pod: &Pod, container: &Container, image: &Image) -> Result<Identity, ConfigError> {
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.clone()).unwrap_or_default();
    let csc = container.security_context.clone().unwrap_or_default();
    let run_as_user = csc.run_as_user.or(psc.run_as_user);
    let uid = run_as_user.unwrap_or(image.uid);
    // without runAsGroup the runtime takes the primary group of the user in the image
    let gid = csc.run_as_group.or(psc.run_as_group).unwrap_or(if uid == image.uid { image.gid } else { 0 });
    if csc.run_as_non_root.or(psc.run_as_non_root) == Some(true) && uid == 0 {
        let pod_name = format!(
            "{}_{}({})",
            pod.metadata.name.as_deref().unwrap_or_default(),
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.uid.as_deref().unwrap_or_default()
        );
        let container = container.name.clone();
        return Err(if run_as_user.is_some() {
            ConfigError::RunAsUserIsRoot { pod: pod_name, container }
        } else {
            ConfigError::ImageRunsAsRoot { pod: pod_name, container }
        });
    }
    let mut groups: Vec<i64> = psc.fs_group.into_iter().chain(psc.supplemental_groups.into_iter().flatten()).collect();
    groups.dedup();
    let normalise = |c: &String| c.to_ascii_lowercase().trim_start_matches("cap_").to_owned();
    let caps = csc.capabilities.unwrap_or_default();
    let dropped: Vec<String> = caps.drop.iter().flatten().map(normalise).collect();
    let mut capabilities: Vec<String> = if dropped.iter().any(|c| c == "all") {
        Vec::new()
    } else {
        DEFAULT_CAPS.iter().map(|c| (*c).to_owned()).filter(|c| !dropped.contains(c)).collect()
    };
    for add in caps.add.iter().flatten().map(normalise) {
        if add == "all" {
            return Err(ConfigError::UnsupportedField("capabilities.add ALL".to_owned()));
        }
        if !capabilities.contains(&add) {
            capabilities.push(add);
        }
    }
    Ok(Identity {
        uid,
        gid,
        groups,
        capabilities,
        no_new_privs: csc.allow_privilege_escalation == Some(false),
        read_only_root: csc.read_only_root_filesystem == Some(true),
    })
}

/// `setpriv` arguments that become this identity before exec'ing the program.
pub fn setpriv_args(id: &Identity) -> Vec<String> {
    let mut args = vec![format!("--reuid={}", id.uid), format!("--regid={}", id.gid)];
    if id.groups.is_empty() {
        args.push("--clear-groups".to_owned());
    } else {
        args.push(format!("--groups={}", id.groups.iter().map(i64::to_string).collect::<Vec<_>>().join(",")));
    }
    args.push("--inh-caps=-all".to_owned());
    let bounding: String = std::iter::once("-all".to_owned())
        .chain(id.capabilities.iter().map(|c| format!("+{c}")))
        .collect::<Vec<_>>()
        .join(",");
    args.push(format!("--bounding-set={bounding}"));
    if id.no_new_privs {
        args.push("--no-new-privs".to_owned());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Capabilities, PodSecurityContext, PodSpec, SecurityContext};

    fn image(uid: i64) -> Image {
        Image { entrypoint: vec![], cmd: vec![], uid, gid: uid, aliases: vec![] }
    }

    fn pod(psc: PodSecurityContext) -> Pod {
        let mut pod =
            Pod { spec: Some(PodSpec { security_context: Some(psc), ..Default::default() }), ..Default::default() };
        pod.metadata.name = Some("p".to_owned());
        pod.metadata.namespace = Some("ns".to_owned());
        pod.metadata.uid = Some("u".to_owned());
        pod
    }

    fn container(sc: SecurityContext) -> Container {
        Container { name: "c".to_owned(), security_context: Some(sc), ..Default::default() }
    }

    #[test]
    fn run_as_non_root_refuses_uid_zero_from_the_spec_or_from_the_image() {
        let non_root = SecurityContext { run_as_non_root: Some(true), ..Default::default() };
        let err = identity(
            &pod(PodSecurityContext { run_as_user: Some(0), ..Default::default() }),
            &container(non_root.clone()),
            &image(1000),
        );
        assert_eq!(
            err.unwrap_err().to_string(),
            "container's runAsUser breaks non-root policy (pod: \"p_ns(u)\", container: c)"
        );
        let err = identity(&pod(PodSecurityContext::default()), &container(non_root.clone()), &image(0));
        assert_eq!(
            err.unwrap_err().to_string(),
            "container has runAsNonRoot and image will run as root (pod: \"p_ns(u)\", container: c)"
        );
        let ok = identity(
            &pod(PodSecurityContext { run_as_user: Some(1000), ..Default::default() }),
            &container(non_root),
            &image(0),
        );
        assert_eq!(ok.map(|id| id.uid), Ok(1000));
    }

    #[test]
    fn the_container_context_overrides_the_pod_and_fs_group_joins_the_groups() {
        let psc = PodSecurityContext {
            run_as_user: Some(1000),
            run_as_group: Some(1000),
            fs_group: Some(2000),
            supplemental_groups: Some(vec![3000]),
            ..Default::default()
        };
        let csc =
            SecurityContext { run_as_user: Some(1001), allow_privilege_escalation: Some(false), ..Default::default() };
        let id = identity(&pod(psc), &container(csc), &image(65532)).expect("identity");
        assert_eq!((id.uid, id.gid, id.groups.clone(), id.no_new_privs), (1001, 1000, vec![2000, 3000], true));
        assert_eq!(setpriv_args(&id)[..3], ["--reuid=1001", "--regid=1000", "--groups=2000,3000"]);
    }

    #[test]
    fn drop_all_then_add_leaves_only_the_added_capabilities() {
        let csc = SecurityContext {
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                add: Some(vec!["NET_BIND_SERVICE".to_owned()]),
            }),
            ..Default::default()
        };
        let id = identity(&pod(PodSecurityContext::default()), &container(csc), &image(0)).expect("identity");
        assert_eq!(id.capabilities, ["net_bind_service"]);
        assert!(setpriv_args(&id).contains(&"--bounding-set=-all,+net_bind_service".to_owned()));
        let kept = identity(&pod(PodSecurityContext::default()), &container(SecurityContext::default()), &image(0))
            .expect("identity");
        assert_eq!(kept.capabilities.len(), DEFAULT_CAPS.len());
    }
}
