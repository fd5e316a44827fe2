//! The RiskPlatform custom resource: spec and status types shared by the operator and the API server.
