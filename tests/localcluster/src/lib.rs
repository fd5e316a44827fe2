//! A local Kubernetes cluster for tests on top of kube-testenv: controllers, scheduler,
//! Service proxy, kube-state-metrics and Prometheus configuration (this half), and a kubelet.
pub mod contract;
pub mod controllers;
pub mod manager;
pub mod network;
pub mod services;
