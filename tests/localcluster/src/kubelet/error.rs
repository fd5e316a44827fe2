//! The kubelet's errors: configuration a container cannot start with, and failures of the host
//! operations (processes, namespaces, cgroups, files, API calls).

/// Why a container's configuration is refused: reported as `CreateContainerConfigError` with
/// the message a kubelet gives.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    #[error("secret \"{0}\" not found")]
    SecretNotFound(String),
    #[error("couldn't find key {key} in Secret {secret}")]
    SecretKeyNotFound { key: String, secret: String },
    #[error("configmap \"{0}\" not found")]
    ConfigMapNotFound(String),
    #[error("couldn't find key {key} in ConfigMap {config_map}")]
    ConfigMapKeyNotFound { key: String, config_map: String },
    #[error("unsupported field {0}")]
    UnsupportedField(String),
    #[error("container's runAsUser breaks non-root policy (pod: \"{pod}\", container: {container})")]
    RunAsUserIsRoot { pod: String, container: String },
    #[error("container has runAsNonRoot and image will run as root (pod: \"{pod}\", container: {container})")]
    ImageRunsAsRoot { pod: String, container: String },
    #[error("invalid quantity {value:?} for {what}")]
    Quantity { what: String, value: String },
    #[error("volumeMount {mount} names no volume of the pod")]
    UnknownVolume { mount: String },
    #[error("probe port {0} names no port of the container")]
    UnknownPort(String),
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("command {command} failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig { path: String, message: String },
    #[error("no free pod IP in {0}")]
    PodCidrExhausted(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("volume {volume}: {message}")]
    Volume { volume: String, message: String },
}

impl Error {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
