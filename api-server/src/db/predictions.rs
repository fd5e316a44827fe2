//! Stored predictions: one row per scoring of a company, read back as a paginated history.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use super::unnamed;
use crate::model::{Prediction, Ratios, RiskLevel, Zone};

/// A prediction as stored and returned.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct PredictionRecord {
    pub id: Uuid,
    pub company_id: Uuid,
    /// The stored statement scored, when one was named.
    pub statement_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    #[serde(flatten)]
    pub prediction: Prediction,
}

/// One line of a company's history.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct HistoryEntry {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub probability: f64,
    pub risk_level: String,
}

pub async fn insert(
    conn: &mut PgConnection,
    tenant: Uuid,
    company: Uuid,
    statement: Option<Uuid>,
    input_hash: &[u8],
    p: &Prediction,
) -> Result<PredictionRecord, sqlx::Error> {
    let row = sqlx::query!(
        "INSERT INTO predictions (id, tenant_id, company_id, statement_id, input_hash, model_version, probability,
             risk_level, o_score, z_score, zone, ratios)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         RETURNING id, created_at",
        Uuid::new_v4(),
        tenant,
        company,
        statement,
        input_hash,
        p.model_version,
        p.probability,
        p.risk_level.as_str(),
        p.o_score,
        p.z_score,
        p.zone.as_str(),
        Json(&p.ratios) as _,
    )
    .fetch_one(unnamed(conn))
    .await?;
    Ok(PredictionRecord {
        id: row.id,
        company_id: company,
        statement_id: statement,
        created_at: row.created_at,
        prediction: p.clone(),
    })
}

/// The latest prediction of a company, with everything behind it.
pub async fn latest(
    conn: &mut PgConnection,
    tenant: Uuid,
    company: Uuid,
) -> Result<Option<PredictionRecord>, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT id, statement_id, created_at, model_version, probability, risk_level, o_score, z_score, zone,
               ratios AS "ratios: Json<Ratios>"
           FROM predictions WHERE tenant_id = $1 AND company_id = $2
           ORDER BY created_at DESC, id DESC LIMIT 1"#,
        tenant,
        company,
    )
    .fetch_optional(unnamed(conn))
    .await?;
    Ok(row.and_then(|r| {
        Some(PredictionRecord {
            id: r.id,
            company_id: company,
            statement_id: r.statement_id,
            created_at: r.created_at,
            prediction: Prediction {
                model_version: r.model_version,
                probability: r.probability,
                risk_level: RiskLevel::parse(&r.risk_level)?,
                o_score: r.o_score,
                z_score: r.z_score,
                zone: Zone::parse(&r.zone)?,
                ratios: r.ratios.0,
            },
        })
    }))
}

/// A page of a company's history, newest first, within `[from, to)`, after the cursor
/// `(created_at, id)` of the previous page's last entry.
pub async fn history(
    conn: &mut PgConnection,
    tenant: Uuid,
    company: Uuid,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<HistoryEntry>, sqlx::Error> {
    let (after_time, after_id) = after.unzip();
    sqlx::query_as!(
        HistoryEntry,
        "SELECT id, created_at, probability, risk_level FROM predictions
         WHERE company_id = $2 AND tenant_id = $1
           AND ($3::timestamptz IS NULL OR created_at >= $3)
           AND ($4::timestamptz IS NULL OR created_at < $4)
           AND ($5::timestamptz IS NULL OR (created_at, id) < ($5, $6::uuid))
         ORDER BY created_at DESC, id DESC
         LIMIT $7",
        tenant,
        company,
        from,
        to,
        after_time,
        after_id,
        limit,
    )
    .fetch_all(unnamed(conn))
    .await
}
