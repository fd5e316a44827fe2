//! Autoscaling policy: pure decisions from (config, samples, previous state, now), the HPA baselines and the replay simulator.
