//! Read replicas: which one (if any) serves a read that may lag slightly, from each replica's
//! measured replication lag and its own circuit breaker. A replica that is too far behind, not
//! measured recently, or failing is skipped, and the read goes to the primary.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use riskplatform_breaker::local::{Admission, LocalBreaker};
use riskplatform_breaker::BreakerConfig;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use super::{connect_options, Tx};
use crate::config::{DatabaseArgs, ReplicaArgs};
use crate::deps::is_database_outage;

/// Seconds a standby is behind the primary. A standby streaming from its primary that has
/// replayed all it received is not behind, whatever its last replayed commit's age: on an idle
/// primary that timestamp ages without any lag. Otherwise (WAL waiting to be replayed, or no WAL
/// receiver running: cut off from the primary, it cannot know what it misses) the lag is the age
/// of the last commit it replayed. A server not in recovery (a replica promoted) has no lag. The
/// WAL receiver's row is visible to any user (its details only to pg_read_all_stats).
const LAG_SQL: &str = "SELECT (CASE \
    WHEN NOT pg_is_in_recovery() THEN 0 \
    WHEN EXISTS (SELECT 1 FROM pg_stat_wal_receiver) \
        AND pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 \
    ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0) END)::float8";

/// A measurement older than this many probe intervals is stale: the probe is stuck, so the
/// replica's lag is unknown and it is skipped.
const STALE_AFTER_INTERVALS: u32 = 3;

/// The `target` label of reads served by the primary.
pub const PRIMARY: &str = "primary";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReplicaLabel {
    replica: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabel {
    target: String,
}

/// What is known of one replica, under one lock.
struct Health {
    breaker: LocalBreaker,
    /// The last lag measured and when; None until the first probe succeeds and after one fails.
    measured: Option<(f64, Instant)>,
}

pub(super) struct Replica {
    name: String,
    pool: PgPool,
    /// The lag probe has a connection of its own, so it does not queue behind reads and a busy
    /// replica is not mistaken for a stuck one.
    probe_pool: PgPool,
    health: Mutex<Health>,
}

/// Every replica of this process, with their metrics.
pub struct Replicas {
    replicas: Vec<Replica>,
    max_lag_seconds: f64,
    interval: Duration,
    started: Instant,
    /// Round-robin position among the replicas.
    next: AtomicUsize,
    lag: Family<ReplicaLabel, Gauge<f64, AtomicU64>>,
    serving: Family<ReplicaLabel, Gauge>,
    reads: Family<TargetLabel, Counter>,
}

impl Replicas {
    /// One lazily connecting pool per replica database, on PgBouncer like the primary's.
    pub fn new(database: &DatabaseArgs, args: &ReplicaArgs, breaker: BreakerConfig, registry: &mut Registry) -> Self {
        let acquire_timeout = Duration::from_millis(database.acquire_timeout_ms);
        let replicas = args
            .read_databases
            .iter()
            .filter(|name| !name.is_empty())
            .map(|name| {
                let options = connect_options(database).database(name);
                let pool = PgPoolOptions::new()
                    .max_connections(args.replica_max_connections)
                    .acquire_timeout(acquire_timeout)
                    .connect_lazy_with(options.clone());
                let probe_pool =
                    PgPoolOptions::new().max_connections(1).acquire_timeout(acquire_timeout).connect_lazy_with(options);
                let health = Mutex::new(Health { breaker: LocalBreaker::new(breaker), measured: None });
                Replica { name: name.clone(), pool, probe_pool, health }
            })
            .collect();
        let replicas = Self {
            replicas,
            max_lag_seconds: args.replica_max_lag_seconds,
            interval: Duration::from_millis(args.replica_probe_interval_ms.max(100)),
            started: Instant::now(),
            next: AtomicUsize::new(0),
            lag: Family::default(),
            serving: Family::default(),
            reads: Family::default(),
        };
        registry.register(
            "riskplatform_replica_lag_seconds",
            "Replication lag of each read replica, as last measured",
            replicas.lag.clone(),
        );
        registry.register(
            "riskplatform_replica_serving",
            "Whether a read replica takes reads: 1 yes, 0 skipped (lagging, unmeasured or failing)",
            replicas.serving.clone(),
        );
        registry.register(
            "riskplatform_database_reads",
            "Reads that may lag, by the server that answered (a replica's database, or primary)",
            replicas.reads.clone(),
        );
        for r in &replicas.replicas {
            replicas.serving.get_or_create(&replica_label(&r.name)).set(0);
            replicas.reads.get_or_create(&target_label(&r.name)).inc_by(0);
        }
        replicas.reads.get_or_create(&target_label(PRIMARY)).inc_by(0);
        replicas
    }

    fn now_ms(&self) -> i64 {
        i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    /// A replica that may serve a read now, taking turns among the healthy ones; None: use the primary.
    pub(super) fn pick(&self) -> Option<&Replica> {
        let n = self.replicas.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = self.now_ms();
        (0..n).map(|i| &self.replicas[(start + i) % n]).find(|r| {
            let mut h = lock(&r.health);
            let fresh = h.measured.is_some_and(|(lag, at)| {
                lag <= self.max_lag_seconds && at.elapsed() <= self.interval * STALE_AFTER_INTERVALS
            });
            // Ask the breaker last: admitting a half-open trial call uses it up.
            fresh && matches!(h.breaker.admit(now), Admission::Allowed)
        })
    }

    /// Opens a transaction on a picked replica. BEGIN answers at once on a healthy one; waiting
    /// longer than a probe interval means PgBouncer cannot reach it (it retries the connection
    /// for seconds) or has no free server, and the primary will answer sooner.
    pub(super) async fn begin(&self, r: &Replica) -> Result<Tx, sqlx::Error> {
        tokio::time::timeout(self.interval, Tx::begin(&r.pool)).await.unwrap_or(Err(sqlx::Error::PoolTimedOut))
    }

    /// Records the outcome of a read a replica was picked for.
    pub(super) fn record(&self, r: &Replica, result: Result<(), &sqlx::Error>) {
        let failed = result.is_err_and(is_replica_failure);
        if let Err(error) = result {
            tracing::warn!(replica = %r.name, %error, "read on a replica failed; reading from the primary");
        }
        let now = self.now_ms();
        if let Some(to) = lock(&r.health).breaker.record(!failed, now) {
            tracing::warn!(replica = %r.name, state = ?to, "replica circuit breaker changed state");
        }
        if result.is_ok() {
            self.count(&r.name);
        }
    }

    pub(super) fn count(&self, target: &str) {
        self.reads.get_or_create(&target_label(target)).inc();
    }

    /// Measures every replica's lag once per interval, until the process ends.
    pub async fn watch(self: Arc<Self>) {
        if self.replicas.is_empty() {
            return;
        }
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            futures::future::join_all(self.replicas.iter().map(|r| self.probe(r))).await;
        }
    }

    async fn probe(&self, r: &Replica) {
        let measure = async {
            let mut tx = Tx::begin(&r.probe_pool).await?;
            let lag: f64 = sqlx::query_scalar(LAG_SQL).fetch_one(tx.exec()).await?;
            tx.commit().await.map(|()| lag)
        };
        // A probe slower than the interval counts as failed: the replica is not answering in time.
        let result = match tokio::time::timeout(self.interval, measure).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.interval)),
        };
        let label = replica_label(&r.name);
        let now = self.now_ms();
        let mut h = lock(&r.health);
        match result {
            Ok(lag) => {
                self.lag.get_or_create(&label).set(lag);
                if lag > self.max_lag_seconds && h.measured.is_none_or(|(was, _)| was <= self.max_lag_seconds) {
                    tracing::warn!(replica = %r.name, lag_seconds = lag, max = self.max_lag_seconds, "replica lags; reads go to the primary");
                }
                h.measured = Some((lag, Instant::now()));
            }
            Err(error) => {
                if h.measured.is_some() {
                    tracing::warn!(replica = %r.name, %error, "replica lag probe failed; reads go to the primary");
                }
                h.measured = None;
            }
        }
        let serving = h.measured.is_some_and(|(lag, _)| lag <= self.max_lag_seconds) && !h.breaker.rejects(now);
        self.serving.get_or_create(&label).set(i64::from(serving));
    }
}

/// Failures that say the replica cannot serve: unreachable, or a query cancelled because replay
/// needed what it read (SQLSTATE 40001 on a standby). Other errors would fail on the primary too.
fn is_replica_failure(e: &sqlx::Error) -> bool {
    is_database_outage(e) || matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("40001"))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked holding it; the fields stay consistent.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn replica_label(name: &str) -> ReplicaLabel {
    ReplicaLabel { replica: name.to_owned() }
}

fn target_label(target: &str) -> TargetLabel {
    TargetLabel { target: target.to_owned() }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::config::{Cli, Command};

    /// Replicas `a` and `b` (lazy pools: nothing connects) with a 10 s bound and 1 s probes.
    fn replicas() -> Replicas {
        let argv = ["riskplatform-api", "serve", "--pg-read-databases=a,b"];
        let Command::Serve(args) = Cli::parse_from(argv).command else { unreachable!("a serve command") };
        let breaker = BreakerConfig { failure_threshold: 2, ..args.breaker.config() };
        Replicas::new(&args.database, &args.replicas, breaker, &mut Registry::default())
    }

    fn measured(r: &Replicas, name: &str, lag: f64, ago: Duration) {
        let replica = r.replicas.iter().find(|x| x.name == name).expect("replica");
        lock(&replica.health).measured = Some((lag, Instant::now() - ago));
    }

    fn picks(r: &Replicas, n: usize) -> Vec<Option<String>> {
        (0..n).map(|_| r.pick().map(|x| x.name.clone())).collect()
    }

    #[tokio::test]
    async fn replicas_never_measured_take_no_reads() {
        assert_eq!(picks(&replicas(), 2), [None, None]);
    }

    #[tokio::test]
    async fn healthy_replicas_take_turns() {
        let r = replicas();
        measured(&r, "a", 0.0, Duration::ZERO);
        measured(&r, "b", 10.0, Duration::ZERO);
        let mut got = picks(&r, 4);
        got.sort();
        let (a, b) = (Some("a".to_owned()), Some("b".to_owned()));
        assert_eq!(got, [a.clone(), a, b.clone(), b], "lag at the bound still serves");
    }

    #[tokio::test]
    async fn a_replica_above_the_lag_bound_is_skipped() {
        let r = replicas();
        measured(&r, "a", 10.5, Duration::ZERO);
        measured(&r, "b", 0.2, Duration::ZERO);
        assert_eq!(picks(&r, 3), [Some("b".to_owned()), Some("b".to_owned()), Some("b".to_owned())]);
        measured(&r, "b", 11.0, Duration::ZERO);
        assert_eq!(picks(&r, 1), [None], "every replica lags: the primary");
    }

    #[tokio::test]
    async fn a_measurement_older_than_three_intervals_is_not_trusted() {
        let r = replicas();
        measured(&r, "a", 0.0, Duration::from_millis(3100));
        measured(&r, "b", 0.0, Duration::from_millis(2900));
        assert_eq!(picks(&r, 2), [Some("b".to_owned()), Some("b".to_owned())]);
    }

    #[tokio::test]
    async fn a_replica_whose_reads_fail_is_skipped_once_its_breaker_opens() {
        let r = replicas();
        measured(&r, "a", 0.0, Duration::ZERO);
        let refused = sqlx::Error::PoolTimedOut;
        r.record(&r.replicas[0], Err(&refused));
        assert_eq!(picks(&r, 1), [Some("a".to_owned())], "one failure is under the threshold");
        r.record(&r.replicas[0], Err(&refused));
        assert_eq!(picks(&r, 1), [None]);
        // A bad statement fails on the primary too: it says nothing against the replica.
        let r = replicas();
        measured(&r, "a", 0.0, Duration::ZERO);
        let bad = sqlx::Error::RowNotFound;
        r.record(&r.replicas[0], Err(&bad));
        r.record(&r.replicas[0], Err(&bad));
        assert_eq!(picks(&r, 1), [Some("a".to_owned())]);
    }
}
