//! The prediction service. So far only the scoring model is built; the REST API, workers,
//! migrations and admin commands are still to come (see the open issue for the prediction API).

pub mod model;
