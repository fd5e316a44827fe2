//! Validation of what the schema cannot check: the referenced Secrets exist and hold the keys.

use std::fmt;

use k8s_openapi::api::core::v1::Secret;
use riskplatform_crd::RiskPlatform;

use crate::controller::build::names;
use crate::error::{Error, Result};

/// Database credentials read from the referenced Secret. Debug never prints the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).field("password", &"<redacted>").finish()
    }
}

/// What the pure build needs from the cluster besides the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validated {
    pub credentials: Credentials,
    /// Hash of the credentials, put in pod templates under [`super::build::CONFIG_HASH_ANNOTATION`] so a rotated
    /// password rolls the pods that read it from their environment.
    pub credentials_hash: String,
}

/// Checks the credentials Secret of `rp`; `secret` is what the fetch step found under its name.
pub fn validate(rp: &RiskPlatform, namespace: &str, secret: Option<&Secret>) -> Result<Validated> {
    let reference = &rp.spec.pgbouncer.credentials_secret_ref;
    let field = "spec.pgbouncer.credentialsSecretRef";
    let secret = secret.ok_or_else(|| Error::SecretMissing {
        namespace: namespace.to_owned(),
        name: reference.name.clone(),
        field,
    })?;
    let read = |key: &str| -> Result<String> {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Error::SecretKeyMissing {
                namespace: namespace.to_owned(),
                name: reference.name.clone(),
                key: key.to_owned(),
                field,
            })
    };
    let credentials =
        Credentials { username: read(&reference.username_key)?, password: read(&reference.password_key)? };
    let credentials_hash = super::build::config_hash_of(&[
        names(rp).platform.as_bytes(),
        credentials.username.as_bytes(),
        credentials.password.as_bytes(),
    ]);
    Ok(Validated { credentials, credentials_hash })
}
