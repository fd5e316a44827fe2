"""Installs or upgrades the chart through the real Helm library (helm-sdkpy), as a user's
`helm upgrade --install` would; the end-to-end tests use it to put the operator into a local
cluster.

    python3 tests/helm/install.py --kubeconfig K --namespace NS --release R [--values JSON]
"""

import argparse
import asyncio
import json
import pathlib
import sys

import helm_sdkpy as helm

CHART = pathlib.Path(__file__).resolve().parents[2] / "charts" / "riskplatform-operator"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--release", required=True)
    parser.add_argument("--values", default="{}", help="chart values as a JSON object")
    args = parser.parse_args()
    try:
        values = json.loads(args.values)
    except json.JSONDecodeError as e:
        print(f"--values is not JSON: {e}", file=sys.stderr)
        return 2
    config = helm.Configuration(namespace=args.namespace, kubeconfig=args.kubeconfig)
    try:
        release = asyncio.run(helm.Upgrade(config).run(
            args.release, str(CHART), values=values, install=True, create_namespace=True, wait=False))
    except helm.HelmError as e:
        print(f"helm upgrade --install {args.release}: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"name": release.get("name"), "version": release.get("version")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
