//! Test harness: starts real components (Kubernetes API server, PostgreSQL, PgBouncer, Redis, Prometheus) on loopback for integration tests.
pub mod api;
pub mod cluster;
pub mod echo;
pub mod http;
pub mod liverun;
pub mod load;
pub mod localcluster;
pub mod operator;
pub mod pgbouncer;
pub mod platform;
pub mod postgres;
pub mod process;
pub mod prometheus;
pub mod redis;
pub mod replica;
pub mod service;
