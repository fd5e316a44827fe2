//! Autoscaling policy: pure decisions from (config, samples, previous state, now), the HPA and
//! KEDA baselines, and the replay simulator that compares them on real traffic traces.

pub mod config;
pub mod forecast;
pub mod policy;
pub mod signal;
pub mod sim;
pub mod state;

pub use config::{Bounds, Component, DemandSizing, ForecastSizing, PolicyConfig, Thresholds};
pub use policy::{decide, Inputs};
pub use signal::{Reading, Signal, SignalState};
pub use state::{Action, ComponentState, Decision, Driver, ForecastRecord, SignalInput};
