//! Group commit of predictions: concurrent requests' predictions are written together, one
//! INSERT and one transaction per group, and each request answers only after its group
//! committed. Under light load a group is one prediction (no added wait); under heavy load a
//! group is whatever arrived while the previous groups were being written, which turns thousands
//! of tiny transactions through PgBouncer into a few dozen larger ones.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::db::predictions::{self, NewPrediction, PredictionRecord};
use crate::db::Db;
use crate::error::ApiError;

/// Largest group: bounds one statement's parameter arrays and one transaction's work.
const MAX_GROUP: usize = 500;
/// Groups written at once; more would only queue in PgBouncer.
const CONCURRENT_GROUPS: usize = 4;

type Reply = oneshot::Sender<Result<PredictionRecord, ApiError>>;

#[derive(Clone)]
pub struct PredictionWriter {
    queue: mpsc::Sender<(NewPrediction, Reply)>,
}

/// A group's failure, repeated for each of its requests (the error type is not Clone).
fn each(e: &ApiError) -> ApiError {
    match e {
        ApiError::Unavailable { dependency, retry_after_secs } => {
            ApiError::Unavailable { dependency: *dependency, retry_after_secs: *retry_after_secs }
        }
        other => ApiError::internal(anyhow::anyhow!("writing predictions: {other}")),
    }
}

impl PredictionWriter {
    /// Starts the writer task on the current runtime.
    pub fn spawn(db: Db) -> Self {
        let (queue, mut rx) = mpsc::channel::<(NewPrediction, Reply)>(MAX_GROUP * CONCURRENT_GROUPS);
        let permits = Arc::new(Semaphore::new(CONCURRENT_GROUPS));
        tokio::spawn(async move {
            loop {
                let Ok(permit) = permits.clone().acquire_owned().await else { return };
                let Some(first) = rx.recv().await else { return };
                let mut group = vec![first];
                while group.len() < MAX_GROUP {
                    match rx.try_recv() {
                        Ok(item) => group.push(item),
                        Err(_) => break,
                    }
                }
                let db = db.clone();
                tokio::spawn(async move {
                    let (items, replies): (Vec<NewPrediction>, Vec<Reply>) = group.into_iter().unzip();
                    let written = async {
                        let mut tx = db.begin().await?;
                        let result = predictions::insert_many(&mut tx, &items).await;
                        db.finish(tx, result).await
                    }
                    .await;
                    match written {
                        Ok(records) => {
                            for (reply, record) in replies.into_iter().zip(records) {
                                let _ = reply.send(Ok(record));
                            }
                        }
                        Err(e) => {
                            for reply in replies {
                                let _ = reply.send(Err(each(&e)));
                            }
                        }
                    }
                    drop(permit);
                });
            }
        });
        Self { queue }
    }

    /// Stores one prediction, returning it once its group committed.
    pub async fn write(&self, item: NewPrediction) -> Result<PredictionRecord, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((item, reply))
            .await
            .map_err(|_| ApiError::internal(anyhow::anyhow!("prediction writer stopped")))?;
        answer.await.map_err(|_| ApiError::internal(anyhow::anyhow!("prediction writer dropped a request")))?
    }
}
