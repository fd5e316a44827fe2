//! Test harness: starts real components (Kubernetes API server, PostgreSQL, PgBouncer, Redis, Prometheus) on loopback for integration tests.
