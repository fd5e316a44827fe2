//! Stored predictions: one row per scoring of a company, read back as a paginated history.

use super::Tx;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use utoipa::ToSchema;
use uuid::Uuid;

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

/// A prediction to store.
#[derive(Clone, Debug)]
pub struct NewPrediction {
    pub tenant: Uuid,
    pub company: Uuid,
    pub statement: Option<Uuid>,
    pub input_hash: Vec<u8>,
    pub prediction: Prediction,
}

/// Stores several predictions with one statement; returns them in the given order.
pub async fn insert_many(tx: &mut Tx, items: &[NewPrediction]) -> Result<Vec<PredictionRecord>, sqlx::Error> {
    let ids: Vec<Uuid> = items.iter().map(|_| Uuid::new_v4()).collect();
    let col = |f: fn(&NewPrediction) -> Uuid| items.iter().map(f).collect::<Vec<_>>();
    let (tenants, companies) = (col(|i| i.tenant), col(|i| i.company));
    let statements: Vec<Option<Uuid>> = items.iter().map(|i| i.statement).collect();
    let hashes: Vec<Vec<u8>> = items.iter().map(|i| i.input_hash.clone()).collect();
    let versions: Vec<String> = items.iter().map(|i| i.prediction.model_version.clone()).collect();
    let probabilities: Vec<f64> = items.iter().map(|i| i.prediction.probability).collect();
    let levels: Vec<&str> = items.iter().map(|i| i.prediction.risk_level.as_str()).collect();
    let o_scores: Vec<f64> = items.iter().map(|i| i.prediction.o_score).collect();
    let z_scores: Vec<f64> = items.iter().map(|i| i.prediction.z_score).collect();
    let zones: Vec<&str> = items.iter().map(|i| i.prediction.zone.as_str()).collect();
    let ratios: Vec<Json<&Ratios>> = items.iter().map(|i| Json(&i.prediction.ratios)).collect();
    let rows = sqlx::query!(
        "INSERT INTO predictions (id, tenant_id, company_id, statement_id, input_hash, model_version, probability,
             risk_level, o_score, z_score, zone, ratios)
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::bytea[], $6::text[],
             $7::float8[], $8::text[], $9::float8[], $10::float8[], $11::text[], $12::jsonb[])
         RETURNING id, created_at",
        &ids,
        &tenants,
        &companies,
        &statements as _,
        &hashes,
        &versions,
        &probabilities,
        &levels as _,
        &o_scores,
        &z_scores,
        &zones as _,
        &ratios as _,
    )
    .fetch_all(tx.exec())
    .await?;
    let created: std::collections::HashMap<Uuid, DateTime<Utc>> =
        rows.into_iter().map(|r| (r.id, r.created_at)).collect();
    Ok(items
        .iter()
        .zip(ids)
        .map(|(item, id)| PredictionRecord {
            id,
            company_id: item.company,
            statement_id: item.statement,
            created_at: created.get(&id).copied().unwrap_or_else(Utc::now),
            prediction: item.prediction.clone(),
        })
        .collect())
}

/// The latest prediction of a company, with everything behind it.
pub async fn latest(tx: &mut Tx, tenant: Uuid, company: Uuid) -> Result<Option<PredictionRecord>, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT id, statement_id, created_at, model_version, probability, risk_level, o_score, z_score, zone,
               ratios AS "ratios: Json<Ratios>"
           FROM predictions WHERE tenant_id = $1 AND company_id = $2
           ORDER BY created_at DESC, id DESC LIMIT 1"#,
        tenant,
        company,
    )
    .fetch_optional(tx.exec())
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
    tx: &mut Tx,
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
    .fetch_all(tx.exec())
    .await
}
