//! A local Kubernetes cluster for tests on top of kube-testenv, so that the Pods the operator
//! creates really run: controllers, scheduler, Service proxy, kube-state-metrics, the Prometheus
//! configuration, and a kubelet that runs Pods as processes in their own namespaces and cgroups.
pub mod contract;
pub mod controllers;
pub mod kubelet;
pub mod manager;
pub mod network;
pub mod quantity;
pub mod services;
