//! A local cluster for tests: the parts kube-testenv lacks so that the Pods the operator creates really run.

pub mod contract;
pub mod kubelet;
