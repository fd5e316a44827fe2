//! The prediction service `riskplatform-api`: the REST API (`serve`), bulk job workers
//! (`worker`), migrations and admin commands. `main` parses the configuration and calls in here,
//! so tests drive the same code.

pub mod admin;
pub mod auth;
pub mod cache;
pub mod config;
pub mod csvio;
pub mod db;
pub mod deps;
pub mod drain;
pub mod error;
pub mod invalidation;
pub mod metrics;
pub mod model;
pub mod pgbouncer_exporter;
pub mod published;
pub mod queue;
pub mod ratelimit;
pub mod routes;
pub mod server;
pub mod shed;
pub mod state;
pub mod sweep;
pub mod worker;
pub mod writer;
