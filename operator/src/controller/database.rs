//! Whether a platform's database answers as the operator sees it: the host resolves, the port
//! accepts a connection and PostgreSQL takes the credentials. A failure becomes the Degraded
//! condition with its reason, so a platform pointed at a wrong host, a stopped server or a wrong
//! password says so instead of showing only pods that never start. Results are kept for one
//! interval per (host, port, database, credentials), so many platforms on one database cost one
//! connection per interval, even when they are all reconciled at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use riskplatform_crd::{DatabaseSpec, RiskPlatform};
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::{ConnectOptions, Connection};

use super::status::Problem;
use super::validate::Validated;

/// How long one check may take: resolving, connecting and authenticating.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// What went wrong reaching the database, in the words the condition uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unreachable {
    HostNotFound {
        host: String,
        detail: String,
    },
    Refused {
        host: String,
        port: u16,
    },
    /// Accepted and closed at once: typically a proxy (a Service) with nothing behind it.
    Reset {
        host: String,
        port: u16,
    },
    /// Answered, but not as PostgreSQL does: another service on the port, or a proxy whose
    /// backend went away mid-handshake.
    NotPostgres {
        host: String,
        port: u16,
    },
    TimedOut {
        host: String,
        port: u16,
    },
    AuthenticationFailed {
        username: String,
        detail: String,
    },
    DatabaseMissing {
        name: String,
    },
    Other {
        host: String,
        port: u16,
        detail: String,
    },
}

impl Unreachable {
    pub fn problem(&self) -> Problem {
        let (reason, message) = match self {
            Self::HostNotFound { host, detail } => {
                ("DatabaseHostNotFound", format!("database host {host:?} does not resolve ({detail})"))
            }
            Self::Refused { host, port } => {
                ("DatabaseUnreachable", format!("database {host}:{port} refuses connections"))
            }
            Self::Reset { host, port } => (
                "DatabaseUnreachable",
                format!("database {host}:{port} closes every connection at once (is the server behind it down?)"),
            ),
            Self::NotPostgres { host, port } => (
                "DatabaseUnreachable",
                format!(
                    "database {host}:{port} does not answer as PostgreSQL does (is the server behind it down, or is \
                     another service listening there?)"
                ),
            ),
            Self::TimedOut { host, port } => (
                "DatabaseUnreachable",
                format!("database {host}:{port} did not answer within {} s", CHECK_TIMEOUT.as_secs()),
            ),
            Self::AuthenticationFailed { username, detail } => (
                "DatabaseAuthenticationFailed",
                format!("the database refuses the credentials of user {username:?}: {detail}"),
            ),
            Self::DatabaseMissing { name } => {
                ("DatabaseNotFound", format!("the database server has no database {name:?}"))
            }
            Self::Other { host, port, detail } => {
                ("DatabaseUnreachable", format!("database {host}:{port} cannot be used: {detail}"))
            }
        };
        Problem {
            reason: reason.to_owned(),
            message: format!("{message} (checked from the operator; spec.pgbouncer.database)"),
        }
    }
}

/// Classifies a failed connection: by the I/O error, or by the SQLSTATE when the server answered.
pub fn classify(host: &str, port: u16, database: &str, username: &str, error: &sqlx::Error) -> Unreachable {
    match error {
        sqlx::Error::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            Unreachable::Refused { host: host.to_owned(), port }
        }
        sqlx::Error::Io(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::BrokenPipe
            ) =>
        {
            Unreachable::Reset { host: host.to_owned(), port }
        }
        sqlx::Error::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            Unreachable::TimedOut { host: host.to_owned(), port }
        }
        sqlx::Error::Database(e) => from_sqlstate(host, port, database, username, e.code().as_deref(), e.message()),
        // sqlx's text for these names its own source lines, which says nothing to a user.
        sqlx::Error::Protocol(_) => Unreachable::NotPostgres { host: host.to_owned(), port },
        other => Unreachable::Other { host: host.to_owned(), port, detail: other.to_string() },
    }
}

fn from_sqlstate(
    host: &str,
    port: u16,
    database: &str,
    username: &str,
    code: Option<&str>,
    message: &str,
) -> Unreachable {
    match code {
        // invalid_authorization_specification (28000) and invalid_password (28P01)
        Some(c) if c.starts_with("28") => {
            Unreachable::AuthenticationFailed { username: username.to_owned(), detail: message.to_owned() }
        }
        Some("3D000") => Unreachable::DatabaseMissing { name: database.to_owned() },
        _ => Unreachable::Other { host: host.to_owned(), port, detail: message.to_owned() },
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Target {
    host: String,
    port: u16,
    database: String,
    credentials_hash: String,
}

/// One target's last result; its lock is held while the target is checked, so reconciles that
/// ask meanwhile wait for that check instead of each starting its own.
type Slot = Arc<tokio::sync::Mutex<Option<(Instant, Option<Unreachable>)>>>;

/// The checks' results of the last interval.
pub struct DatabaseCheck {
    pub interval: Duration,
    results: Mutex<HashMap<Target, Slot>>,
}

impl DatabaseCheck {
    pub fn new(interval: Duration) -> Self {
        Self { interval, results: Mutex::default() }
    }

    /// What is wrong with the platform's database, from a check at most one interval old.
    pub async fn check(&self, spec: &DatabaseSpec, validated: &Validated) -> Option<Unreachable> {
        let port = u16::try_from(spec.port).unwrap_or(5432);
        let target = Target {
            host: spec.host.clone(),
            port,
            database: spec.name.clone(),
            credentials_hash: super::build::config_hash_of(&[
                validated.credentials.username.as_bytes(),
                validated.credentials.password.as_bytes(),
            ]),
        };
        let slot = {
            let mut results = self.results.lock().unwrap_or_else(|p| p.into_inner());
            // Targets no platform asked for within an interval are forgotten (a slot being
            // checked right now is kept: its lock is taken).
            let interval = self.interval;
            results.retain(|_, slot| {
                slot.try_lock().map_or(true, |r| r.as_ref().is_some_and(|(at, _)| at.elapsed() < interval))
            });
            results.entry(target.clone()).or_default().clone()
        };
        // A thousand platforms reconciled at once after a start used to start a thousand
        // checks, each resolving the host on a blocking thread of its own.
        let mut last = slot.lock().await;
        if let Some((at, result)) = last.as_ref() {
            if at.elapsed() < self.interval {
                return result.clone();
            }
        }
        let result = connect(&target, validated).await;
        *last = Some((Instant::now(), result.clone()));
        result
    }

    /// New credentials that the database refuses are not handed to the pods: PgBouncer would
    /// roll onto a login that fails and cut the running API off the database. They keep the
    /// credentials they were given (`deployed`, from the owned auth Secret), and the refusal is
    /// the problem to show until the database accepts the new ones. Any other failure cannot
    /// tell good credentials from bad, so it holds nothing back.
    pub async fn hold_refused(
        &self,
        rp: &RiskPlatform,
        deployed: Option<(String, String)>,
        validated: Validated,
    ) -> (Validated, Option<Problem>) {
        let Some((username, password)) = deployed else { return (validated, None) };
        let c = &validated.credentials;
        if c.username == username && c.password == password {
            return (validated, None);
        }
        match self.check(&rp.spec.pgbouncer.database, &validated).await {
            Some(refused @ Unreachable::AuthenticationFailed { .. }) => {
                let mut problem = refused.problem();
                problem
                    .message
                    .push_str("; the pods keep the credentials they run with until the database accepts the new ones");
                (validated.with_database_credentials(rp, username, password), Some(problem))
            }
            _ => (validated, None),
        }
    }
}

async fn connect(target: &Target, validated: &Validated) -> Option<Unreachable> {
    let Target { host, port, database, .. } = target;
    let username = &validated.credentials.username;
    let attempt = async {
        // Resolved first so that a name that does not resolve is told apart from other I/O errors.
        if let Err(e) = tokio::net::lookup_host((host.as_str(), *port)).await {
            return Some(Unreachable::HostNotFound { host: host.clone(), detail: e.to_string() });
        }
        let options = PgConnectOptions::new()
            .host(host)
            .port(*port)
            .database(database)
            .username(username)
            .password(&validated.credentials.password)
            .ssl_mode(PgSslMode::Prefer)
            .application_name("riskplatform-operator")
            .disable_statement_logging();
        match options.connect().await {
            Ok(connection) => {
                let _ = connection.close().await;
                None
            }
            Err(e) => Some(classify(host, *port, database, username, &e)),
        }
    };
    tokio::time::timeout(CHECK_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| Some(Unreachable::TimedOut { host: host.clone(), port: *port }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(kind: std::io::ErrorKind) -> sqlx::Error {
        sqlx::Error::Io(std::io::Error::from(kind))
    }

    #[test]
    fn each_kind_of_failure_gets_its_own_reason_and_names_what_is_wrong() {
        let cases = [
            (
                classify("db", 5432, "risk", "app", &io(std::io::ErrorKind::ConnectionRefused)),
                "DatabaseUnreachable",
                "db:5432 refuses connections",
            ),
            (
                classify("db", 6000, "risk", "app", &io(std::io::ErrorKind::TimedOut)),
                "DatabaseUnreachable",
                "db:6000 did not answer",
            ),
            (
                from_sqlstate(
                    "db",
                    5432,
                    "risk",
                    "app",
                    Some("28P01"),
                    "password authentication failed for user \"app\"",
                ),
                "DatabaseAuthenticationFailed",
                "user \"app\"",
            ),
            (
                from_sqlstate("db", 5432, "risk", "app", Some("28000"), "no pg_hba.conf entry"),
                "DatabaseAuthenticationFailed",
                "no pg_hba.conf entry",
            ),
            (
                from_sqlstate("db", 5432, "risk", "app", Some("3D000"), "database \"risk\" does not exist"),
                "DatabaseNotFound",
                "no database \"risk\"",
            ),
            (
                from_sqlstate("db", 5432, "risk", "app", Some("53300"), "too many connections"),
                "DatabaseUnreachable",
                "too many connections",
            ),
            (
                Unreachable::HostNotFound { host: "db.invalid".into(), detail: "no such host".into() },
                "DatabaseHostNotFound",
                "\"db.invalid\" does not resolve",
            ),
        ];
        for (unreachable, reason, needle) in cases {
            let problem = unreachable.problem();
            assert_eq!(problem.reason, reason, "{unreachable:?}");
            assert!(problem.message.contains(needle), "{:?} lacks {needle:?}", problem.message);
            assert!(problem.message.contains("spec.pgbouncer.database"), "{:?}", problem.message);
        }
    }

    fn validated() -> Validated {
        Validated {
            credentials: super::super::validate::Credentials {
                username: "app".into(),
                password: "secret".into(),
                client_password: "c".into(),
                stats_password: "s".into(),
            },
            credentials_hash: "h".into(),
        }
    }

    #[tokio::test]
    async fn a_host_that_does_not_resolve_and_a_closed_port_are_reported_as_such() {
        let validated = validated();
        let check = DatabaseCheck::new(Duration::from_secs(60));
        let spec = |host: &str, port: i32| DatabaseSpec {
            host: host.into(),
            port,
            name: "risk".into(),
            read_replicas: vec![],
        };
        let missing = check.check(&spec("no-such-host.invalid", 5432), &validated).await;
        assert!(matches!(missing, Some(Unreachable::HostNotFound { .. })), "{missing:?}");

        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = closed.local_addr().expect("addr").port();
        drop(closed);
        let refused = check.check(&spec("127.0.0.1", i32::from(port)), &validated).await;
        assert_eq!(refused, Some(Unreachable::Refused { host: "127.0.0.1".into(), port }));

        // Answers the SSL request with a byte PostgreSQL never sends, as the local cluster's
        // Service proxy did with the database stopped behind it.
        let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = other.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt as _;
            while let Ok((mut conn, _)) = other.accept().await {
                let _ = conn.write_all(b"\0").await;
            }
        });
        let garbled = check.check(&spec("127.0.0.1", i32::from(port)), &validated).await;
        server.abort();
        assert_eq!(garbled, Some(Unreachable::NotPostgres { host: "127.0.0.1".into(), port }));
        let message = garbled.expect("problem").problem().message;
        assert!(!message.contains("sqlx"), "no library internals in a status: {message}");
    }

    #[tokio::test]
    async fn platforms_checked_at_once_share_one_connection_to_their_database() {
        let validated = validated();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        let server = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt as _;
            while let Ok((mut conn, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = conn.write_all(b"\0").await;
            }
        });
        let check = DatabaseCheck::new(Duration::from_secs(60));
        let spec = DatabaseSpec {
            host: "127.0.0.1".into(),
            port: i32::from(port),
            name: "risk".into(),
            read_replicas: vec![],
        };
        let results = futures::future::join_all((0..50).map(|_| check.check(&spec, &validated))).await;
        server.abort();
        assert!(results.iter().all(|r| matches!(r, Some(Unreachable::NotPostgres { .. }))), "{results:?}");
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1, "one check for 50 platforms");
    }
}
