//! Validation of what the schema cannot check: the referenced Secrets exist and hold the keys.

use std::fmt;

use k8s_openapi::api::core::v1::Secret;
use riskplatform_crd::RiskPlatform;

use crate::controller::build::names;
use crate::error::{Error, Result};

/// Database credentials read from the referenced Secret, and the password the platform's pods
/// give PgBouncer. Debug never prints a password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// The API's and workers' password at PgBouncer, generated once and kept in the owned auth
    /// Secret: it never changes with the database password, so a rotation rolls only PgBouncer.
    pub client_password: String,
    /// The PgBouncer exporter's password at PgBouncer's admin console (read-only `stats_users`),
    /// generated and kept the same way.
    pub stats_password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("client_password", &"<redacted>")
            .field("stats_password", &"<redacted>")
            .finish()
    }
}

/// What the pure build needs from the cluster besides the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validated {
    pub credentials: Credentials,
    /// Hash of what the API and worker pods read from their environment at start (the database
    /// username and their PgBouncer password), put in their pod templates under
    /// [`super::build::CONFIG_HASH_ANNOTATION`] so a change rolls them.
    pub credentials_hash: String,
}

/// The owned auth Secret's key holding the pods' PgBouncer password.
pub const CLIENT_PASSWORD_KEY: &str = "client-password";
/// The owned auth Secret's key holding the PgBouncer exporter's password.
pub const STATS_PASSWORD_KEY: &str = "stats-password";
/// The owned auth Secret's keys holding the database credentials PgBouncer and the migrations
/// were given: a copy, so that new credentials the database refuses can be held back
/// ([`super::database::DatabaseCheck::hold_refused`]) while the pods keep the ones that work.
pub const DATABASE_USERNAME_KEY: &str = "database-username";
pub const DATABASE_PASSWORD_KEY: &str = "database-password";

/// The passwords the operator makes up for a platform's own users at PgBouncer.
#[derive(Clone, PartialEq, Eq)]
pub struct GeneratedPasswords {
    pub client: String,
    pub stats: String,
}

impl GeneratedPasswords {
    /// The ones the owned auth Secret `auth` already holds, else new ones.
    pub fn kept_or_new(auth: Option<&Secret>) -> Self {
        Self {
            client: generated_password(auth, CLIENT_PASSWORD_KEY),
            stats: generated_password(auth, STATS_PASSWORD_KEY),
        }
    }
}

/// The password under `key` of the owned auth Secret `auth`, else a new random one (244 bits).
fn generated_password(auth: Option<&Secret>, key: &str) -> String {
    auth.and_then(|s| s.data.as_ref())
        .and_then(|d| d.get(key))
        .and_then(|v| String::from_utf8(v.0.clone()).ok())
        .filter(|v| v.len() >= 32)
        .unwrap_or_else(|| format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple()))
}

/// The database credentials the platform's pods were last given, from the owned auth Secret.
pub fn deployed_database_credentials(auth: Option<&Secret>) -> Option<(String, String)> {
    let data = auth?.data.as_ref()?;
    let read = |key: &str| data.get(key).and_then(|v| String::from_utf8(v.0.clone()).ok()).filter(|v| !v.is_empty());
    Some((read(DATABASE_USERNAME_KEY)?, read(DATABASE_PASSWORD_KEY)?))
}

impl Validated {
    fn new(rp: &RiskPlatform, credentials: Credentials) -> Self {
        let credentials_hash = super::build::config_hash_of(&[
            names(rp).platform.as_bytes(),
            credentials.username.as_bytes(),
            credentials.client_password.as_bytes(),
        ]);
        Self { credentials, credentials_hash }
    }

    /// The same platform given other database credentials (the pods' PgBouncer password stays).
    pub fn with_database_credentials(self, rp: &RiskPlatform, username: String, password: String) -> Self {
        Self::new(rp, Credentials { username, password, ..self.credentials })
    }
}

/// Checks the credentials Secret of `rp`; `secret` is what the fetch step found under its name,
/// `generated` the passwords of the platform's own PgBouncer users ([`GeneratedPasswords`]).
pub fn validate(
    rp: &RiskPlatform,
    namespace: &str,
    secret: Option<&Secret>,
    generated: GeneratedPasswords,
) -> Result<Validated> {
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
            // PgBouncer's auth file holds one entry per line.
            .filter(|v| !v.is_empty() && !v.contains(['\n', '\r', '\0']))
            .ok_or_else(|| Error::SecretKeyMissing {
                namespace: namespace.to_owned(),
                name: reference.name.clone(),
                key: key.to_owned(),
                field,
            })
    };
    let credentials = Credentials {
        username: read(&reference.username_key)?,
        password: read(&reference.password_key)?,
        client_password: generated.client,
        stats_password: generated.stats,
    };
    Ok(Validated::new(rp, credentials))
}
