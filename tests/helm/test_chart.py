"""The Helm chart, through the real Helm library (helm-sdkpy): lint, schema, and an install into a
real Kubernetes API server (kube-testenv) whose objects are then checked."""

import asyncio
import json
import os
import pathlib
import subprocess
import tempfile

import helm_sdkpy as helm
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "riskplatform-operator"
ASSETS = pathlib.Path(os.environ.get("RISKPLATFORM_KUBE_ASSETS", ROOT.parent / "shared" / "kube-testenv"))

# Helm's lint severities: 1 info, 2 warning, 4 error.
LINT_WARNING = 2


def run(coro):
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def cluster():
    if os.environ.get("KUBECONFIG"):
        yield os.environ["KUBECONFIG"]
        return
    with tempfile.TemporaryDirectory(prefix="kube-testenv-helm-") as d:
        subprocess.run([str(ASSETS / "start"), d], check=True, capture_output=True)
        try:
            yield os.path.join(d, "kubeconfig")
        finally:
            subprocess.run([str(ASSETS / "stop"), d], capture_output=True)


def kubectl(kubeconfig, *args):
    out = subprocess.run(["kubectl", "--kubeconfig", kubeconfig, *args, "-o", "json"], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout)


def test_the_chart_lints_without_warnings_or_errors():
    result = run(helm.Lint(helm.Configuration()).run(str(CHART)))
    assert result["TotalChartsLinted"] == 1
    assert not result["Errors"], result
    serious = [m for m in result["Messages"] or [] if m["Severity"] >= LINT_WARNING]
    assert not serious, serious


def test_the_chart_crd_is_the_generated_one_byte_for_byte():
    for generated in (ROOT / "crds").glob("*.yaml"):
        assert (CHART / "crds" / generated.name).read_bytes() == generated.read_bytes(), (
            f"charts/riskplatform-operator/crds/{generated.name} differs from crds/: copy it over")


def test_the_values_schema_describes_every_default_value():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())

    def walk(v, s, path):
        assert s is not None, f"{path} is not in values.schema.json"
        assert "description" in s or path == "", f"{path} has no description"
        if isinstance(v, dict) and "properties" in s:
            for k, sub in v.items():
                walk(sub, s["properties"].get(k), f"{path}.{k}".lstrip("."))

    walk(values, schema, "")


def test_install_creates_the_operator_with_restricted_security_and_least_privilege(cluster):
    config = helm.Configuration(namespace="riskplatform-system", kubeconfig=cluster)
    release = run(helm.Install(config).run("rp", str(CHART), create_namespace=True, wait=False))
    assert release, release
    # A RiskPlatform from values needs the CRD the first install brought: enable it on upgrade.
    values = {"riskPlatform": {"enabled": True, "name": "demo", "spec": {
        "pgbouncer": {"database": {"host": "db", "name": "risk"}, "credentialsSecretRef": {"name": "db"}}}}}
    upgraded = run(helm.Upgrade(config).run("rp", str(CHART), values=values, wait=False))
    assert upgraded, upgraded

    ns = "riskplatform-system"
    deployment = kubectl(cluster, "-n", ns, "get", "deployment", "rp-riskplatform-operator")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    container = pod["containers"][0]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"

    kubectl(cluster, "-n", ns, "get", "serviceaccount", "rp-riskplatform-operator")
    service = kubectl(cluster, "-n", ns, "get", "service", "rp-riskplatform-operator")
    assert service["spec"]["ports"][0]["port"] == 8080

    role = kubectl(cluster, "get", "clusterrole", "rp-riskplatform-operator")
    verbs = {(g, r): set(rule["verbs"]) for rule in role["rules"]
             for g in rule["apiGroups"] for r in rule["resources"]}
    assert verbs[("riskplatform.io", "riskplatforms/status")] == {"get", "patch", "update"}
    assert verbs[("coordination.k8s.io", "leases")] >= {"get", "create", "update"}
    assert "delete" not in verbs[("riskplatform.io", "riskplatforms")], "the operator never deletes platforms"
    for resource in ("roles", "rolebindings"):
        assert verbs[("rbac.authorization.k8s.io", resource)] == {"get", "list", "watch", "create", "patch"}
    assert not any(v & {"escalate", "bind", "impersonate"} for v in verbs.values()), "no RBAC escalation"
    assert ("rbac.authorization.k8s.io", "clusterroles") not in verbs, "platform access is namespaced"
    assert not any("*" in v for v in verbs.values()), "no wildcard verbs"
    binding = kubectl(cluster, "get", "clusterrolebinding", "rp-riskplatform-operator")
    assert binding["subjects"][0] == {"kind": "ServiceAccount", "name": "rp-riskplatform-operator", "namespace": ns}

    crd = kubectl(cluster, "get", "crd", "riskplatforms.riskplatform.io")
    assert any(c["type"] == "Established" and c["status"] == "True" for c in crd["status"]["conditions"])
    platform = kubectl(cluster, "-n", ns, "get", "riskplatform", "demo")
    assert platform["spec"]["autoscaling"]["api"]["minReplicas"] == 2, "schema defaults applied"


def test_the_schema_rejects_a_bad_value(cluster):
    config = helm.Configuration(namespace="bad-values", kubeconfig=cluster)
    with pytest.raises(helm.HelmError) as err:
        run(helm.Install(config).run("bad", str(CHART), values={"replicaCount": "two"},
                                     create_namespace=True, wait=False))
    assert "replicaCount" in str(err.value)


def test_the_readme_values_table_lists_every_value_of_the_schema():
    schema = json.loads((CHART / "values.schema.json").read_text())
    readme = (ROOT / "README.md").read_text()

    def leaves(s, path):
        for k, sub in s.get("properties", {}).items():
            p = f"{path}.{k}" if path else k
            if sub.get("type") == "object" and "properties" in sub:
                yield from leaves(sub, p)
            else:
                yield p, sub.get("description", "")

    for path, description in leaves(schema, ""):
        assert f"| `{path}` |" in readme and description in readme, f"README values table lacks {path}"


# A minimal PrometheusRule CRD (the Prometheus Operator's group, kind and scope; any body), so the
# chart's rule can be installed into an API server that has no Prometheus Operator.
PROMETHEUS_RULE_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "prometheusrules.monitoring.coreos.com"},
    "spec": {"group": "monitoring.coreos.com", "scope": "Namespaced",
             "names": {"plural": "prometheusrules", "singular": "prometheusrule", "kind": "PrometheusRule"},
             "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                 "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]},
}


def test_the_dashboard_configmap_and_the_alerts_install_when_enabled(cluster):
    subprocess.run(["kubectl", "--kubeconfig", cluster, "apply", "--validate=false", "-f", "-"], check=True, capture_output=True,
                   input=json.dumps(PROMETHEUS_RULE_CRD), text=True)
    subprocess.run(["kubectl", "--kubeconfig", cluster, "wait", "--for=condition=Established", "--timeout=30s",
                    "crd/prometheusrules.monitoring.coreos.com"], check=True, capture_output=True)
    ns = "observability"
    config = helm.Configuration(namespace=ns, kubeconfig=cluster)
    values = {"grafanaDashboard": {"enabled": True, "folder": "RiskPlatform"}, "prometheusRule": {"enabled": True}}
    assert run(helm.Install(config).run("obs", str(CHART), values=values, create_namespace=True, wait=False))

    cm = kubectl(cluster, "-n", ns, "get", "configmap", "obs-riskplatform-operator-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"]["grafana_folder"] == "RiskPlatform"
    shipped = json.loads(cm["data"]["riskplatform.json"])
    assert shipped == json.loads((CHART / "dashboards" / "riskplatform.json").read_text())
    titles = {p["title"] for p in shipped["panels"]}
    for wanted in ("Request rate by route", "Latency p50 / p95 / p99 by route", "Error rate (5xx share)",
                   "Cache hit ratio by layer", "Queue depth by priority", "Circuit breaker state by dependency",
                   "Replicas", "Scaling decisions"):
        assert wanted in titles, f"dashboard lacks {wanted!r}: {sorted(titles)}"

    rule = kubectl(cluster, "-n", ns, "get", "prometheusrule", "obs-riskplatform-operator")
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    memory = alerts["RiskPlatformHighMemory"]
    assert memory["for"] == "5m"
    assert "container_memory_working_set_bytes" in memory["expr"] and memory["expr"].endswith("> 0.8")
    # promtool (Prometheus's own parser) checks every rule of the rendered object.
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        yaml.safe_dump({"groups": rule["spec"]["groups"]}, f)
        f.flush()
        checked = subprocess.run(["promtool", "check", "rules", f.name], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr
