//! A real PgBouncer (Debian's `pgbouncer`) in transaction pooling mode in front of a test
//! PostgreSQL, configured like the operator's (SCRAM, extra_float_digits ignored).

use anyhow::Result;
use tempfile::TempDir;

use crate::postgres::{DATABASE, USER};
use crate::prometheus::free_port;
use crate::service::{hand_to_postgres, Recipe, Service};

/// The password clients present to PgBouncer (PostgreSQL itself trusts loopback).
pub const PASSWORD: &str = "test-password";
/// A user of PgBouncer's `stats_users`, as the operator configures one for its exporter.
pub const STATS_USER: &str = "riskplatform-stats";
pub const STATS_PASSWORD: &str = "stats-password";

pub struct PgBouncer {
    pub service: Service,
    _dir: TempDir,
}

impl PgBouncer {
    pub fn start(postgres_port: u16) -> Result<Self> {
        Self::start_with_replicas(postgres_port, &[])
    }

    /// The same with one read-only database per replica, `risk_ro_<n>`, as the operator writes them.
    pub fn start_with_replicas(postgres_port: u16, replica_ports: &[u16]) -> Result<Self> {
        let replicas: String = replica_ports
            .iter()
            .enumerate()
            .map(|(n, port)| {
                format!("{} = host=127.0.0.1 port={port} dbname={DATABASE} user={USER}\n", replica_database(n))
            })
            .collect();
        let dir = tempfile::Builder::new().prefix("pgbouncer-").tempdir()?;
        let port = free_port()?;
        let userlist = dir.path().join("userlist.txt");
        std::fs::write(&userlist, format!("\"{USER}\" \"{PASSWORD}\"\n\"{STATS_USER}\" \"{STATS_PASSWORD}\"\n"))?;
        let ini = dir.path().join("pgbouncer.ini");
        std::fs::write(
            &ini,
            format!(
                "[databases]\n\
                 {DATABASE} = host=127.0.0.1 port={postgres_port} dbname={DATABASE} user={USER}\n\
                 {replicas}\
                 [pgbouncer]\n\
                 listen_addr = 127.0.0.1\n\
                 listen_port = {port}\n\
                 unix_socket_dir =\n\
                 auth_type = scram-sha-256\n\
                 auth_file = {userlist}\n\
                 stats_users = {STATS_USER}\n\
                 pool_mode = transaction\n\
                 max_client_conn = 2000\n\
                 default_pool_size = 50\n\
                 reserve_pool_size = 10\n\
                 max_db_connections = 200\n\
                 ignore_startup_parameters = extra_float_digits\n\
                 server_connect_timeout = 2\n\
                 server_login_retry = 1\n\
                 query_wait_timeout = 10\n\
                 log_connections = 0\n\
                 log_disconnections = 0\n",
                userlist = userlist.display()
            ),
        )?;
        hand_to_postgres(dir.path())?;
        let service = Service::start(Recipe {
            name: "pgbouncer",
            program: "pgbouncer".to_owned(),
            args: vec![ini.display().to_string()],
            port,
            unprivileged: true,
            stop_signal: "TERM",
        })?;
        Ok(Self { service, _dir: dir })
    }

    pub fn port(&self) -> u16 {
        self.service.port()
    }

    pub fn url(&self) -> String {
        format!("postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{DATABASE}", self.port())
    }
}

/// PgBouncer's name for the `n`th replica's read-only database.
pub fn replica_database(n: usize) -> String {
    format!("{DATABASE}_ro_{n}")
}
