//! The prediction service: REST API, workers, migrations and admin commands (filled by issue 3).
