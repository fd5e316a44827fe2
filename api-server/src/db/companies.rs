//! Companies of a tenant. Symbols are stored upper-case; one active company per symbol.

use super::Tx;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Company {
    pub id: Uuid,
    pub symbol: String,
    pub name: String,
    pub sector: Option<String>,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCompany {
    #[schema(example = "ACME")]
    pub symbol: String,
    #[schema(example = "Acme Corporation")]
    pub name: String,
    pub sector: Option<String>,
}

/// Fields to change; absent fields stay as they are.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompanyPatch {
    pub symbol: Option<String>,
    pub name: Option<String>,
    pub sector: Option<String>,
}

/// Inserts a company; None when the tenant already has an active company with this symbol.
pub async fn insert(tx: &mut Tx, tenant: Uuid, new: &NewCompany) -> Result<Option<Company>, sqlx::Error> {
    sqlx::query_as!(
        Company,
        "INSERT INTO companies (id, tenant_id, symbol, name, sector) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (tenant_id, symbol) WHERE active DO NOTHING
         RETURNING id, symbol, name, sector, active, created_at, updated_at",
        Uuid::new_v4(),
        tenant,
        new.symbol,
        new.name,
        new.sector,
    )
    .fetch_optional(tx.exec())
    .await
}

pub async fn get(tx: &mut Tx, tenant: Uuid, id: Uuid) -> Result<Option<Company>, sqlx::Error> {
    sqlx::query_as!(
        Company,
        "SELECT id, symbol, name, sector, active, created_at, updated_at
         FROM companies WHERE tenant_id = $1 AND id = $2",
        tenant,
        id,
    )
    .fetch_optional(tx.exec())
    .await
}

/// Active companies (and deactivated ones when asked), optionally those whose symbol starts with
/// `symbol_prefix`, ordered by symbol.
pub async fn list(
    tx: &mut Tx,
    tenant: Uuid,
    symbol_prefix: Option<&str>,
    include_inactive: bool,
    limit: i64,
    offset: i64,
) -> Result<Vec<Company>, sqlx::Error> {
    sqlx::query_as!(
        Company,
        "SELECT id, symbol, name, sector, active, created_at, updated_at
         FROM companies
         WHERE tenant_id = $1 AND (active OR $2) AND ($3::text IS NULL OR starts_with(symbol, $3))
         ORDER BY symbol, created_at DESC
         LIMIT $4 OFFSET $5",
        tenant,
        include_inactive,
        symbol_prefix,
        limit,
        offset,
    )
    .fetch_all(tx.exec())
    .await
}

/// Applies a patch to an active company. Err(unique violation) when the new symbol is taken.
pub async fn update(tx: &mut Tx, tenant: Uuid, id: Uuid, patch: &CompanyPatch) -> Result<Option<Company>, sqlx::Error> {
    sqlx::query_as!(
        Company,
        "UPDATE companies SET
             symbol = COALESCE($3, symbol),
             name = COALESCE($4, name),
             sector = COALESCE($5, sector),
             updated_at = now()
         WHERE tenant_id = $1 AND id = $2 AND active
         RETURNING id, symbol, name, sector, active, created_at, updated_at",
        tenant,
        id,
        patch.symbol,
        patch.name,
        patch.sector,
    )
    .fetch_optional(tx.exec())
    .await
}

/// Deactivates a company (its history stays); None when there is no such active company.
pub async fn deactivate(tx: &mut Tx, tenant: Uuid, id: Uuid) -> Result<Option<Company>, sqlx::Error> {
    sqlx::query_as!(
        Company,
        "UPDATE companies SET active = false, updated_at = now()
         WHERE tenant_id = $1 AND id = $2 AND active
         RETURNING id, symbol, name, sector, active, created_at, updated_at",
        tenant,
        id,
    )
    .fetch_optional(tx.exec())
    .await
}
