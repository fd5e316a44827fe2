//! The default PromQL of each autoscaling signal, and the substitution of a platform's names into
//! a query (default or overridden in the spec).
//!
//! The defaults fit a standard cluster: cAdvisor (kubelet) for container usage,
//! kube-state-metrics for resource requests, and the platform's own `/metrics` scraped with the
//! usual `namespace` and `pod` target labels.

/// Names a query is evaluated for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryTarget<'a> {
    pub namespace: &'a str,
    /// The RiskPlatform's name.
    pub platform: &'a str,
    /// The Deployment of the component being scaled.
    pub deployment: &'a str,
}

/// Pods of a Deployment are named `<deployment>-<replicaset hash>-<pod suffix>`; matching both
/// parts keeps `risk-api` from also matching pods of a Deployment called `risk-api-canary`.
const POD_OF_DEPLOYMENT: &str = r#"pod=~"$deployment-[a-z0-9]+-[a-z0-9]+""#;

/// CPU used by the component's containers as a percentage of their CPU requests.
pub const CPU: &str = r#"100 * sum(rate(container_cpu_usage_seconds_total{namespace="$namespace",__PODS__,container!="",container!="POD"}[2m])) / sum(kube_pod_container_resource_requests{namespace="$namespace",__PODS__,resource="cpu"})"#;

/// Working-set memory as a percentage of the memory requests.
pub const MEMORY: &str = r#"100 * sum(container_memory_working_set_bytes{namespace="$namespace",__PODS__,container!="",container!="POD"}) / sum(kube_pod_container_resource_requests{namespace="$namespace",__PODS__,resource="memory"})"#;

/// Requests per second served by all API pods together.
pub const REQUEST_RATE: &str = r#"sum(rate(http_requests_total{namespace="$namespace",__PODS__}[1m]))"#;

/// Jobs waiting in all queues. Every API and worker pod exports the same Redis queue lengths, so
/// the value per queue is taken once (max) before summing over queues.
pub const QUEUE_LENGTH: &str = r#"sum(max by (queue) (riskplatform_queue_length{namespace="$namespace",pod=~"$platform-(api|worker)-[a-z0-9]+-[a-z0-9]+"}))"#;

/// A pod's Deployment: its name without the ReplicaSet hash and the pod suffix.
const DEPLOYMENT_OF_POD: &str = r#""deployment", "$1", "pod", "(.+)-[a-z0-9]+-[a-z0-9]+""#;

/// A pod's platform: the name before `-api-` or `-worker-` and the two suffixes.
const PLATFORM_OF_POD: &str = r#""platform", "$1", "pod", "(.+)-(api|worker)-[a-z0-9]+-[a-z0-9]+""#;

/// The default queries over the pods of many namespaces at once, one series per Deployment (per
/// platform for the queue), with the same meaning as [`CPU`], [`MEMORY`], [`REQUEST_RATE`] and
/// [`QUEUE_LENGTH`] for each.
const CPU_BATCHED: &str = r#"100 * sum by (namespace, deployment) (label_replace(rate(container_cpu_usage_seconds_total{__NS__,container!="",container!="POD"}[2m]), __DEPLOYMENT__)) / sum by (namespace, deployment) (label_replace(kube_pod_container_resource_requests{__NS__,resource="cpu"}, __DEPLOYMENT__))"#;
const MEMORY_BATCHED: &str = r#"100 * sum by (namespace, deployment) (label_replace(container_memory_working_set_bytes{__NS__,container!="",container!="POD"}, __DEPLOYMENT__)) / sum by (namespace, deployment) (label_replace(kube_pod_container_resource_requests{__NS__,resource="memory"}, __DEPLOYMENT__))"#;
const REQUEST_RATE_BATCHED: &str =
    r#"sum by (namespace, deployment) (label_replace(rate(http_requests_total{__NS__}[1m]), __DEPLOYMENT__))"#;
const QUEUE_LENGTH_BATCHED: &str = r#"sum by (namespace, platform) (max by (namespace, platform, queue) (label_replace(riskplatform_queue_length{__NS__}, __PLATFORM__)))"#;

/// The batched default query of `signal` over the pods of `namespaces`.
pub fn batched<'a>(signal: Signal, namespaces: impl IntoIterator<Item = &'a str>) -> String {
    let template = match signal {
        Signal::Cpu => CPU_BATCHED,
        Signal::Memory => MEMORY_BATCHED,
        Signal::RequestRate => REQUEST_RATE_BATCHED,
        Signal::QueueLength => QUEUE_LENGTH_BATCHED,
    };
    // Namespace names are DNS labels, so they need no escaping inside the regex.
    let namespaces: Vec<&str> = namespaces.into_iter().collect();
    template
        .replace("__NS__", &format!(r#"namespace=~"{}""#, namespaces.join("|")))
        .replace("__DEPLOYMENT__", DEPLOYMENT_OF_POD)
        .replace("__PLATFORM__", PLATFORM_OF_POD)
}

/// The label a batched query's series are told apart by, besides the namespace.
pub fn split_label(signal: Signal) -> &'static str {
    match signal {
        Signal::QueueLength => "platform",
        _ => "deployment",
    }
}

/// Substitutes `$namespace`, `$platform` (alias `$name`) and `$deployment` into a query.
pub fn render(template: &str, target: &QueryTarget) -> String {
    template
        .replace("__PODS__", POD_OF_DEPLOYMENT)
        .replace("$namespace", target.namespace)
        .replace("$deployment", target.deployment)
        .replace("$platform", target.platform)
        .replace("$name", target.platform)
}

use riskplatform_autoscale::Signal;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batched_query_covers_every_namespace_and_splits_by_deployment() {
        let q = batched(Signal::Cpu, ["prod", "staging"]);
        assert!(q.contains(r#"container_cpu_usage_seconds_total{namespace=~"prod|staging",container!="""#), "{q}");
        assert!(q.starts_with("100 * sum by (namespace, deployment) (label_replace("), "{q}");
        assert!(q.contains(r#""deployment", "$1", "pod", "(.+)-[a-z0-9]+-[a-z0-9]+""#), "{q}");
        assert!(!q.contains("__"), "{q}");
        let q = batched(Signal::QueueLength, ["prod"]);
        assert!(q.contains(r#""platform", "$1", "pod", "(.+)-(api|worker)-[a-z0-9]+-[a-z0-9]+""#), "{q}");
        assert_eq!(split_label(Signal::QueueLength), "platform");
    }

    const TARGET: QueryTarget = QueryTarget { namespace: "prod", platform: "risk", deployment: "risk-api" };

    #[test]
    fn the_cpu_query_selects_the_component_pods_in_the_namespace() {
        let q = render(CPU, &TARGET);
        assert!(
            q.contains(r#"container_cpu_usage_seconds_total{namespace="prod",pod=~"risk-api-[a-z0-9]+-[a-z0-9]+""#),
            "{q}"
        );
        assert!(q.contains(r#"resource="cpu""#));
        assert!(!q.contains('$'));
    }

    #[test]
    fn the_queue_query_covers_api_and_worker_pods_of_the_platform() {
        let q = render(QUEUE_LENGTH, &TARGET);
        assert!(q.contains(r#"pod=~"risk-(api|worker)-[a-z0-9]+-[a-z0-9]+""#), "{q}");
    }

    #[test]
    fn overrides_may_use_name_as_an_alias_of_platform() {
        assert_eq!(
            render(r#"x{ns="$namespace",p="$name",d="$deployment"}"#, &TARGET),
            r#"x{ns="prod",p="risk",d="risk-api"}"#
        );
    }
}
