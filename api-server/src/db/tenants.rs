//! Tenants and their API keys (stored as SHA-256 digests).

use super::Tx;
use uuid::Uuid;

use crate::auth::{Caller, Role};

/// Creates a tenant; None when the name is taken.
pub async fn create(tx: &mut Tx, name: &str) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "INSERT INTO tenants (id, name) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING id",
        Uuid::new_v4(),
        name
    )
    .fetch_optional(tx.exec())
    .await
}

pub async fn find(tx: &mut Tx, name: &str) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar!("SELECT id FROM tenants WHERE name = $1", name).fetch_optional(tx.exec()).await
}

pub async fn add_key(
    tx: &mut Tx,
    tenant: Uuid,
    role: Role,
    key_hash: &[u8],
    prefix: &str,
) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar!(
        "INSERT INTO api_keys (id, tenant_id, key_hash, prefix, role) VALUES ($1, $2, $3, $4, $5) RETURNING id",
        Uuid::new_v4(),
        tenant,
        key_hash,
        prefix,
        role.as_str(),
    )
    .fetch_one(tx.exec())
    .await
}

/// The caller a key digest belongs to, if the key exists and is not revoked.
pub async fn caller(tx: &mut Tx, key_hash: &[u8]) -> Result<Option<Caller>, sqlx::Error> {
    let row =
        sqlx::query!("SELECT id, tenant_id, role FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL", key_hash)
            .fetch_optional(tx.exec())
            .await?;
    Ok(row.and_then(|r| Some(Caller { key_id: r.id, tenant: r.tenant_id, role: Role::parse(&r.role)? })))
}
