#!/usr/bin/env bash
# Installs the real Helm library (helm-sdkpy) and runs the chart tests.
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
  --ignore-requires-python helm-sdkpy cffi pytest pyyaml
python3 -m pytest -q tests/helm
