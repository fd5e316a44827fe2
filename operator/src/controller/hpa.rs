//! Detection of HorizontalPodAutoscalers that target a Deployment the operator scales: the
//! operator must be the only writer of those replica counts, so it reports the conflict and
//! leaves the component alone instead of fighting.

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::ResourceExt;

/// The competing HPAs among `hpas`, as `(hpa name, deployment name)`, for the given Deployments.
pub fn competing<'a>(
    hpas: impl IntoIterator<Item = &'a HorizontalPodAutoscaler>,
    deployments: &[&str],
) -> Vec<(String, String)> {
    hpas.into_iter()
        .filter_map(|h| {
            let target = &h.spec.as_ref()?.scale_target_ref;
            let is_deployment =
                target.kind == "Deployment" && target.api_version.as_deref().unwrap_or("apps/v1") == "apps/v1";
            (is_deployment && deployments.contains(&target.name.as_str())).then(|| (h.name_any(), target.name.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::autoscaling::v2::{CrossVersionObjectReference, HorizontalPodAutoscalerSpec};

    fn hpa(name: &str, kind: &str, target: &str) -> HorizontalPodAutoscaler {
        HorizontalPodAutoscaler {
            metadata: kube::api::ObjectMeta { name: Some(name.to_owned()), ..Default::default() },
            spec: Some(HorizontalPodAutoscalerSpec {
                scale_target_ref: CrossVersionObjectReference {
                    api_version: Some("apps/v1".to_owned()),
                    kind: kind.to_owned(),
                    name: target.to_owned(),
                },
                max_replicas: 10,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn an_hpa_on_our_api_deployment_competes() {
        let hpas = [hpa("api-hpa", "Deployment", "risk-api"), hpa("other", "Deployment", "unrelated")];
        assert_eq!(competing(&hpas, &["risk-api", "risk-worker"]), vec![("api-hpa".to_owned(), "risk-api".to_owned())]);
    }

    #[test]
    fn an_hpa_on_a_statefulset_of_the_same_name_does_not_compete() {
        assert!(competing(&[hpa("x", "StatefulSet", "risk-api")], &["risk-api"]).is_empty());
    }
}
