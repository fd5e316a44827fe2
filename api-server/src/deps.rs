//! The service's dependencies (PostgreSQL through PgBouncer, Redis): classifying their errors as
//! availability failures, counting calls and failures per dependency for the operator, and the
//! per-pod circuit breaker that fails fast while a dependency is down.

use std::fmt;
use std::sync::Mutex;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use riskplatform_breaker::local::{Admission, LocalBreaker, Published};
use riskplatform_breaker::{BreakerConfig, State};
use serde::Serialize;

use crate::error::ApiError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Dependency {
    Database,
    Redis,
}

impl Dependency {
    pub const ALL: [Dependency; 2] = [Dependency::Database, Dependency::Redis];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Database => "database",
            Self::Redis => "redis",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Database => 0,
            Self::Redis => 1,
        }
    }
}

impl fmt::Display for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DependencyLabel {
    dependency: &'static str,
}

/// Whether a database error means the database is unreachable or refusing work (as opposed to a
/// bad statement or a constraint violation, which are the caller's problem, not an outage).
pub fn is_database_outage(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        // 08: connection exception, 53: insufficient resources, 57P: operator intervention
        // (shutdown), and PgBouncer's own errors, which it reports with 08P01.
        sqlx::Error::Database(db) => {
            db.code().is_some_and(|c| c.starts_with("08") || c.starts_with("53") || c.starts_with("57P"))
        }
        _ => false,
    }
}

/// Unreachable, or refusing writes because `maxmemory` is full of keys it may not evict (under
/// volatile-lru: the job queue), which leaves Redis as unusable as a dead one.
pub fn is_redis_outage(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.code() == Some("OOM")
}

/// One dependency's breaker and its failure streak, under one lock.
struct Tracked {
    breaker: LocalBreaker,
    /// Failures since the last success, whatever the breaker's state (the operator reads it; the
    /// breaker's own streak restarts when it closes).
    consecutive: u64,
    /// Whether the dependency has answered once. Until then its failures are this pod starting
    /// before it (a Service without ready endpoints yet), not an outage: they trip neither this
    /// pod's breaker nor the streak the operator reads, which would otherwise hold a whole new
    /// platform off its Redis for the 60 s recovery timeout.
    reached: bool,
    /// When (unix seconds) the operator opened the platform-wide breaker this pod follows, so a
    /// refused call can say when the operator will let probes through again.
    published_open_since: Option<i64>,
    /// Whether the operator published the dependency as failing for the whole platform (open or
    /// probing), so every pod is in the same state as this one.
    platform_wide_outage: bool,
}

/// Per-dependency accounting shared by every request and worker task of this process.
pub struct Deps {
    started: Instant,
    tracked: [Mutex<Tracked>; 2],
    calls: Family<DependencyLabel, Counter>,
    failures: Family<DependencyLabel, Counter>,
    consecutive: Family<DependencyLabel, Gauge>,
    state: Family<DependencyLabel, Gauge>,
    recovery_timeout_seconds: i64,
}

impl Deps {
    pub fn new(config: BreakerConfig, registry: &mut Registry) -> Self {
        let tracked = || {
            Mutex::new(Tracked {
                breaker: LocalBreaker::new(config),
                consecutive: 0,
                reached: false,
                published_open_since: None,
                platform_wide_outage: false,
            })
        };
        let deps = Self {
            started: Instant::now(),
            tracked: [tracked(), tracked()],
            calls: Family::default(),
            failures: Family::default(),
            consecutive: Family::default(),
            state: Family::default(),
            recovery_timeout_seconds: config.recovery_timeout_seconds,
        };
        // The operator's breaker reads these three series across all pods.
        registry.register("riskplatform_dependency_calls", "Calls to a dependency", deps.calls.clone());
        registry.register(
            "riskplatform_dependency_failures",
            "Calls that failed for availability reasons",
            deps.failures.clone(),
        );
        registry.register(
            "riskplatform_dependency_consecutive_failures",
            "Failures since the last successful call",
            deps.consecutive.clone(),
        );
        registry.register(
            "riskplatform_circuit_breaker_state",
            "This pod's circuit breaker: 0 closed, 1 open, 2 half-open",
            deps.state.clone(),
        );
        for d in Dependency::ALL {
            deps.calls.get_or_create(&label(d)).inc_by(0);
            deps.failures.get_or_create(&label(d)).inc_by(0);
            deps.consecutive.get_or_create(&label(d)).set(0);
            deps.state.get_or_create(&label(d)).set(0);
        }
        deps
    }

    fn now_ms(&self) -> i64 {
        i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    fn tracked(&self, d: Dependency) -> std::sync::MutexGuard<'_, Tracked> {
        // A poisoned lock only means another thread panicked while holding it; the fields are
        // plain values that stay consistent, so keep using them.
        self.tracked[d.index()].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks the breaker whether a call to `d` may go out now; fails fast with 503 while open.
    pub fn admit(&self, d: Dependency) -> Result<(), ApiError> {
        let now = self.now_ms();
        let mut t = self.tracked(d);
        let b = &mut t.breaker;
        let admission = b.admit(now);
        self.state.get_or_create(&label(d)).set(b.state().gauge());
        match admission {
            Admission::Allowed => Ok(()),
            Admission::Rejected { retry_after_ms } => {
                let retry_after_ms = self.published_retry_ms(&t).unwrap_or(retry_after_ms);
                Err(ApiError::Unavailable { dependency: d, retry_after_secs: whole_seconds(retry_after_ms) })
            }
        }
    }

    /// Runs a readiness probe through the breaker: recorded like any call, but the raw error is
    /// kept so the probe can say what kind of failure it was.
    pub async fn probe<T, E>(
        &self,
        d: Dependency,
        call: impl std::future::Future<Output = Result<T, E>>,
        is_outage: fn(&E) -> bool,
    ) -> Result<T, ProbeError<E>> {
        if let Err(ApiError::Unavailable { retry_after_secs, .. }) = self.admit(d) {
            return Err(ProbeError::BreakerOpen { retry_after_secs });
        }
        let result = call.await;
        self.record(d, result.as_ref().is_err_and(is_outage));
        result.map_err(ProbeError::Failed)
    }

    /// Records the outcome of a call that [`Deps::admit`] let through.
    pub fn record(&self, d: Dependency, outage: bool) {
        let l = label(d);
        self.calls.get_or_create(&l).inc();
        if outage {
            self.failures.get_or_create(&l).inc();
        }
        let now = self.now_ms();
        let mut t = self.tracked(d);
        if outage && !t.reached {
            return;
        }
        t.reached = true;
        t.consecutive = if outage { t.consecutive + 1 } else { 0 };
        self.consecutive.get_or_create(&l).set(i64::try_from(t.consecutive).unwrap_or(i64::MAX));
        if let Some(to) = t.breaker.record(!outage, now) {
            tracing::warn!(dependency = %d, state = ?to, "circuit breaker changed state");
        }
        self.state.get_or_create(&l).set(t.breaker.state().gauge());
    }

    /// Follows the state the operator published for the whole platform (None: not published or
    /// unreadable, so this pod's own breaker decides).
    /// `since` is when (unix seconds) the operator entered that state.
    pub fn follow(&self, d: Dependency, published: Option<Published>, since: Option<i64>) {
        let now = self.now_ms();
        let mut t = self.tracked(d);
        t.published_open_since = since.filter(|_| published == Some(Published { state: State::Open, forced: false }));
        t.platform_wide_outage = published.is_some_and(|p| p.state != State::Closed);
        let b = &mut t.breaker;
        b.follow(published, now);
        self.state.get_or_create(&label(d)).set(b.state().gauge());
    }

    /// Milliseconds until the operator turns the platform-wide Open it published half-open (its
    /// recovery timeout after it opened), at least one second; None when nothing computed is open.
    fn published_retry_ms(&self, t: &Tracked) -> Option<i64> {
        let since = t.published_open_since?;
        let wall_ms =
            i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_millis()).ok()?;
        let reopens = since.saturating_add(self.recovery_timeout_seconds).saturating_mul(1000);
        Some((reopens - wall_ms).max(1000))
    }

    /// Whether this pod follows a platform-wide outage of `d` that the operator published.
    pub fn platform_wide_outage(&self, d: Dependency) -> bool {
        self.tracked(d).platform_wide_outage
    }

    /// Whether calls to `d` are being refused right now (open, recovery timeout not yet over).
    pub fn rejecting(&self, d: Dependency) -> bool {
        let now = self.now_ms();
        self.tracked(d).breaker.rejects(now)
    }

    pub fn state(&self, d: Dependency) -> State {
        self.tracked(d).breaker.state()
    }

    /// Seconds until a call to `d` is tried again, for Retry-After on errors that were not
    /// rejected by the breaker itself.
    pub fn retry_after_secs(&self, d: Dependency) -> u64 {
        let now = self.now_ms();
        let t = self.tracked(d);
        whole_seconds(self.published_retry_ms(&t).unwrap_or_else(|| t.breaker.retry_after_ms(now)))
    }

    /// Records a finished call's outcome and maps its error: an outage becomes 503 with the
    /// breaker's Retry-After, anything else an internal error.
    fn outcome<T, E>(&self, d: Dependency, result: Result<T, E>, is_outage: fn(&E) -> bool) -> Result<T, ApiError>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        match result {
            Ok(v) => {
                self.record(d, false);
                Ok(v)
            }
            Err(e) => {
                let outage = is_outage(&e);
                self.record(d, outage);
                if outage {
                    tracing::warn!(dependency = %d, error = %e, "dependency unavailable");
                    Err(ApiError::Unavailable { dependency: d, retry_after_secs: self.retry_after_secs(d) })
                } else {
                    Err(ApiError::internal(e))
                }
            }
        }
    }

    /// Maps a finished database call's result, recording it.
    pub fn database<T>(&self, result: Result<T, sqlx::Error>) -> Result<T, ApiError> {
        self.outcome(Dependency::Database, result, is_database_outage)
    }

    /// Maps a finished Redis call's result, recording it.
    pub fn redis<T>(&self, result: Result<T, redis::RedisError>) -> Result<T, ApiError> {
        self.outcome(Dependency::Redis, result, is_redis_outage)
    }
}

/// Why a readiness probe failed.
#[derive(Debug)]
pub enum ProbeError<E> {
    /// The breaker rejected the call without trying.
    BreakerOpen {
        retry_after_secs: u64,
    },
    Failed(E),
    /// The probe's task ended before it answered (panicked or cancelled at shutdown).
    Aborted(String),
}

/// Milliseconds rounded up to whole seconds, at least one (Retry-After has no fractions).
fn whole_seconds(ms: i64) -> u64 {
    u64::try_from(ms.saturating_add(999) / 1000).unwrap_or(1).max(1)
}

fn label(d: Dependency) -> DependencyLabel {
    DependencyLabel { dependency: d.as_str() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deps() -> Deps {
        Deps::new(BreakerConfig::default(), &mut Registry::default())
    }

    fn unix_now() -> i64 {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock");
        i64::try_from(now.as_secs()).expect("seconds")
    }

    fn retry_of(result: Result<(), ApiError>) -> u64 {
        match result {
            Err(ApiError::Unavailable { retry_after_secs, .. }) => retry_after_secs,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn a_followed_platform_wide_open_says_when_the_operator_will_try_again() {
        let deps = deps();
        let open = Some(Published { state: State::Open, forced: false });
        // Opened 20 s ago with the documented 60 s recovery timeout: about 40 s to go.
        deps.follow(Dependency::Database, open, Some(unix_now() - 20));
        let retry = retry_of(deps.admit(Dependency::Database));
        assert!((39..=41).contains(&retry), "Retry-After {retry}");
        assert_eq!(deps.retry_after_secs(Dependency::Database), retry);
        // Past its timeout (the operator is late to turn it half-open): retry in a second.
        deps.follow(Dependency::Database, open, Some(unix_now() - 600));
        assert_eq!(retry_of(deps.admit(Dependency::Database)), 1);
        // A forced Open has no end the pod could know.
        deps.follow(Dependency::Database, Some(Published { state: State::Open, forced: true }), Some(unix_now()));
        assert_eq!(retry_of(deps.admit(Dependency::Database)), 1);
    }

    #[test]
    fn failures_before_a_dependency_ever_answered_do_not_open_its_breaker() {
        let deps = deps();
        for _ in 0..50 {
            assert!(deps.admit(Dependency::Redis).is_ok(), "still starting: calls go out");
            deps.record(Dependency::Redis, true);
        }
        assert_eq!(deps.state(Dependency::Redis), State::Closed);
        assert_eq!(deps.failures.get_or_create(&label(Dependency::Redis)).get(), 50, "still counted as failures");
        assert_eq!(deps.consecutive.get_or_create(&label(Dependency::Redis)).get(), 0, "but not as a streak");
    }

    #[test]
    fn failures_after_the_first_answer_open_the_breaker_as_before() {
        let deps = deps();
        deps.record(Dependency::Redis, false);
        for _ in 0..50 {
            if deps.admit(Dependency::Redis).is_err() {
                break;
            }
            deps.record(Dependency::Redis, true);
        }
        assert_eq!(deps.state(Dependency::Redis), State::Open);
        assert!(deps.admit(Dependency::Redis).is_err());
        assert_eq!(deps.state(Dependency::Database), State::Closed, "the other dependency is untouched");
    }
}
