//! The operator's error type: permanent problems of a spec versus transient API failures.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// The Kubernetes API failed; usually transient, so the reconcile is retried with backoff.
    #[error("Kubernetes API error: {0}")]
    Kube(#[source] kube::Error),

    /// A Secret the spec refers to does not exist.
    #[error("Secret {namespace}/{name} referenced by {field} does not exist")]
    SecretMissing { namespace: String, name: String, field: &'static str },

    /// A Secret exists but lacks a key the spec refers to, or its value is unusable.
    #[error("Secret {namespace}/{name} has no usable key {key:?} (referenced by {field})")]
    SecretKeyMissing { namespace: String, name: String, key: String, field: &'static str },

    /// The spec passed the schema but cannot work.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),

    /// The API server refused a child as invalid (HTTP 422): retrying the same object cannot help.
    #[error("the API server refused {kind} {name}: {message}")]
    ChildRejected { kind: String, name: String, message: String },

    /// An object lacks metadata the operator needs (e.g. a namespace).
    #[error("object has no {0}")]
    MissingObjectKey(&'static str),

    /// Serializing an object for server-side apply failed.
    #[error("serialization failed: {0}")]
    Serialization(#[source] serde_json::Error),

    /// Joining the leader election failed.
    #[error("leader election failed: {0}")]
    LeaderElection(#[source] kube_lease_manager::LeaseManagerError),

    /// Another replica took the lease while this one was leading.
    #[error("lost leadership")]
    LostLeadership,

    /// The admin HTTP server could not bind or serve.
    #[error("admin server failed: {0}")]
    Admin(#[source] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Permanent errors need a change of the spec or the cluster, not a retry.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Self::SecretMissing { .. }
                | Self::SecretKeyMissing { .. }
                | Self::InvalidSpec(_)
                | Self::ChildRejected { .. }
        )
    }

    /// The reason used in conditions and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Kube(_) => "ApiError",
            Self::SecretMissing { .. } => "SecretMissing",
            Self::SecretKeyMissing { .. } => "SecretKeyMissing",
            Self::InvalidSpec(_) => "InvalidSpec",
            Self::ChildRejected { .. } => "ChildRejected",
            Self::MissingObjectKey(_) => "MissingMetadata",
            Self::Serialization(_) => "SerializationFailed",
            Self::LeaderElection(_) => "LeaderElectionFailed",
            Self::LostLeadership => "LostLeadership",
            Self::Admin(_) => "AdminServerFailed",
        }
    }

    /// Label for the errors-by-kind metric.
    pub fn metric_label(&self) -> String {
        self.reason().to_owned()
    }
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Self::Kube(e)
    }
}
