//! Financial statements of a company, one per period.

use super::Tx;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::model::Statement;

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct StoredStatement {
    pub id: Uuid,
    pub company_id: Uuid,
    /// The reporting period, e.g. `2024` or `2024-Q4`.
    pub period: String,
    #[serde(flatten)]
    pub statement: Statement,
    pub created_at: DateTime<Utc>,
}

struct Row {
    id: Uuid,
    company_id: Uuid,
    period: String,
    total_assets: f64,
    total_liabilities: f64,
    current_assets: f64,
    current_liabilities: f64,
    retained_earnings: f64,
    ebit: f64,
    net_income: f64,
    previous_net_income: f64,
    funds_from_operations: f64,
    book_equity: f64,
    created_at: DateTime<Utc>,
}

impl From<Row> for StoredStatement {
    fn from(r: Row) -> Self {
        Self {
            id: r.id,
            company_id: r.company_id,
            period: r.period,
            statement: Statement {
                total_assets: r.total_assets,
                total_liabilities: r.total_liabilities,
                current_assets: r.current_assets,
                current_liabilities: r.current_liabilities,
                retained_earnings: r.retained_earnings,
                ebit: r.ebit,
                net_income: r.net_income,
                previous_net_income: r.previous_net_income,
                funds_from_operations: r.funds_from_operations,
                book_equity: r.book_equity,
            },
            created_at: r.created_at,
        }
    }
}

/// Stores a statement; None when the company already has one for this period.
pub async fn insert(
    tx: &mut Tx,
    tenant: Uuid,
    company: Uuid,
    period: &str,
    s: &Statement,
) -> Result<Option<StoredStatement>, sqlx::Error> {
    let row = sqlx::query_as!(
        Row,
        "INSERT INTO financial_statements (id, tenant_id, company_id, period, total_assets, total_liabilities,
             current_assets, current_liabilities, retained_earnings, ebit, net_income, previous_net_income,
             funds_from_operations, book_equity)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
         ON CONFLICT (company_id, period) DO NOTHING
         RETURNING id, company_id, period, total_assets, total_liabilities, current_assets, current_liabilities,
             retained_earnings, ebit, net_income, previous_net_income, funds_from_operations, book_equity, created_at",
        Uuid::new_v4(),
        tenant,
        company,
        period,
        s.total_assets,
        s.total_liabilities,
        s.current_assets,
        s.current_liabilities,
        s.retained_earnings,
        s.ebit,
        s.net_income,
        s.previous_net_income,
        s.funds_from_operations,
        s.book_equity,
    )
    .fetch_optional(tx.exec())
    .await?;
    Ok(row.map(Into::into))
}

pub async fn get(tx: &mut Tx, tenant: Uuid, company: Uuid, id: Uuid) -> Result<Option<StoredStatement>, sqlx::Error> {
    let row = sqlx::query_as!(
        Row,
        "SELECT id, company_id, period, total_assets, total_liabilities, current_assets, current_liabilities,
             retained_earnings, ebit, net_income, previous_net_income, funds_from_operations, book_equity, created_at
         FROM financial_statements WHERE tenant_id = $1 AND company_id = $2 AND id = $3",
        tenant,
        company,
        id,
    )
    .fetch_optional(tx.exec())
    .await?;
    Ok(row.map(Into::into))
}

/// All statements of a company, newest period first.
pub async fn list(tx: &mut Tx, tenant: Uuid, company: Uuid) -> Result<Vec<StoredStatement>, sqlx::Error> {
    let rows = sqlx::query_as!(
        Row,
        "SELECT id, company_id, period, total_assets, total_liabilities, current_assets, current_liabilities,
             retained_earnings, ebit, net_income, previous_net_income, funds_from_operations, book_equity, created_at
         FROM financial_statements WHERE tenant_id = $1 AND company_id = $2 ORDER BY period DESC",
        tenant,
        company,
    )
    .fetch_all(tx.exec())
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}
