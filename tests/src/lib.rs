//! Test harness: starts real components (Kubernetes API server, PostgreSQL, PgBouncer, Redis, Prometheus) on loopback for integration tests.
pub mod cluster;
pub mod operator;
pub mod process;
pub mod prometheus;
