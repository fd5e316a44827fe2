//! API keys and roles: keys are 256-bit random tokens shown once and stored as SHA-256 digests;
//! a request's bearer key resolves to its tenant and role (cached for a minute), and the role
//! decides what it may do.

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything an analyst may do, plus deactivating companies and creating keys.
    Admin,
    /// Reads, and creates or changes companies, statements, predictions and jobs.
    Analyst,
    /// Reads only.
    Viewer,
}

/// What a request is about to do, for the role check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Read,
    Write,
    Administer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Analyst => "analyst",
            Self::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Admin, Self::Analyst, Self::Viewer].into_iter().find(|r| r.as_str() == s)
    }

    pub fn may(self, action: Action) -> bool {
        match action {
            Action::Read => true,
            Action::Write => matches!(self, Self::Admin | Self::Analyst),
            Action::Administer => self == Self::Admin,
        }
    }
}

/// The authenticated caller of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    pub key_id: Uuid,
    pub tenant: Uuid,
    pub role: Role,
}

impl Caller {
    pub fn require(&self, action: Action, what: &'static str) -> Result<(), ApiError> {
        if self.role.may(action) {
            Ok(())
        } else {
            Err(ApiError::Forbidden { role: self.role.as_str(), action: what })
        }
    }
}

/// Keys are found by digest only; a revoked key keeps working for at most this long in a pod,
/// or, while the database is unavailable, until it answers again (at most [`KEY_STALE_TTL`]).
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(60);

/// How long a key looked up once still authenticates while the database cannot be asked, so the
/// cached predictions keep answering through an outage longer than [`KEY_CACHE_TTL`].
pub const KEY_STALE_TTL: Duration = Duration::from_secs(3600);

/// A cached key: who it is and when the database said so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyEntry {
    pub caller: Caller,
    pub fetched: std::time::Instant,
}

/// The pod's key cache, by digest.
pub type KeyCache = moka::sync::Cache<Vec<u8>, KeyEntry>;

/// One database lookup per key at a time: requests carrying the same expired (or, after a cache
/// clear, unknown) key wait for that lookup instead of each taking a pooled connection, which
/// under load queued a busy tenant's every request on the pool at once.
pub type KeyLookups = moka::sync::Cache<Vec<u8>, std::sync::Arc<tokio::sync::Mutex<()>>>;

pub fn key_lookups() -> KeyLookups {
    moka::sync::Cache::builder().max_capacity(100_000).time_to_idle(KEY_CACHE_TTL).build()
}

const KEY_PREFIX: &str = "rpk_";

/// A new random key (`rpk_` and 64 hex digits) and its digest.
pub fn new_key() -> (String, Vec<u8>) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let key = format!("{KEY_PREFIX}{}", hex(&bytes));
    let digest = digest(&key);
    (key, digest)
}

/// Checks that a key someone supplies has the form of the keys this service makes, so a
/// truncated or quoted value is refused rather than registered.
pub fn parse_key(key: &str) -> Result<(), String> {
    let Some(hex) = key.strip_prefix(KEY_PREFIX) else { return Err(format!("must start with {KEY_PREFIX:?}")) };
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(format!(
            "must be {KEY_PREFIX:?} followed by 64 lowercase hex digits (it has {} characters after the prefix)",
            hex.len()
        ));
    }
    Ok(())
}

pub fn digest(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The part of a key that may be shown to identify it (never enough to use it).
pub fn key_prefix(key: &str) -> String {
    key.chars().take(KEY_PREFIX.len() + 6).collect()
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// Authenticates the request and charges it to the tenant's rate limit.
impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let key = bearer(parts).ok_or(ApiError::Unauthorized)?;
        let digest = digest(key);
        let caller = match fresh(state.keys.get(&digest)) {
            Some(entry) => entry.caller,
            None => looked_up(state, digest).await?,
        };
        state.limiter.check(caller.tenant)?;
        Ok(caller)
    }
}

fn fresh(entry: Option<KeyEntry>) -> Option<KeyEntry> {
    entry.filter(|e| e.fetched.elapsed() < KEY_CACHE_TTL)
}

/// The caller of a key the cache does not hold fresh, one database lookup per key at a time.
async fn looked_up(state: &AppState, digest: Vec<u8>) -> Result<Caller, ApiError> {
    let gate = state.key_lookups.get_with(digest.clone(), Default::default);
    let _turn = gate.lock().await;
    let cached = state.keys.get(&digest);
    if let Some(entry) = fresh(cached) {
        // Another request looked the key up while this one waited.
        return Ok(entry.caller);
    }
    match (lookup(state, &digest).await, cached) {
        (Ok(Some(caller)), _) => {
            state.keys.insert(digest, KeyEntry { caller, fetched: std::time::Instant::now() });
            Ok(caller)
        }
        (Ok(None), _) => {
            state.keys.invalidate(&digest);
            Err(ApiError::Unauthorized)
        }
        // The database cannot say: the key it confirmed within the last hour still counts.
        (Err(ApiError::Unavailable { .. }), Some(entry)) => Ok(entry.caller),
        (Err(e), _) => Err(e),
    }
}

async fn lookup(state: &AppState, digest: &[u8]) -> Result<Option<Caller>, ApiError> {
    let mut tx = state.db.begin().await?;
    let found = crate::db::tenants::caller(&mut tx, digest).await;
    state.db.finish(tx, found).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_allow_what_their_documentation_says() {
        let table = [
            (Role::Viewer, [true, false, false]),
            (Role::Analyst, [true, true, false]),
            (Role::Admin, [true, true, true]),
        ];
        for (role, allowed) in table {
            let got = [Action::Read, Action::Write, Action::Administer].map(|a| role.may(a));
            assert_eq!(got, allowed, "{role:?}");
        }
    }

    #[test]
    fn a_new_key_is_random_and_only_its_digest_identifies_it() {
        let (a, da) = new_key();
        let (b, db) = new_key();
        assert_ne!(a, b);
        assert!(a.starts_with("rpk_") && a.len() == 68, "{a}");
        assert_eq!(da, digest(&a));
        assert_ne!(da, db);
        assert_eq!(da.len(), 32);
        assert!(!hex(&da).contains(&a[4..]));
    }

    #[test]
    fn a_supplied_key_must_have_the_form_of_a_generated_one() {
        assert_eq!(parse_key(&new_key().0), Ok(()));
        for bad in [
            "",
            "rpk_",
            "rpk_abc",
            &format!("rpk_{}", "A".repeat(64)),
            &format!("key_{}", "a".repeat(64)),
            &format!("rpk_{}\n", "a".repeat(64)),
        ] {
            assert!(parse_key(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
