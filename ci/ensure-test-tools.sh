#!/bin/sh
# Called by `make tools` and .ci/run: make sure every tool the test suite runs is
# installed (promtool, prometheus, helm, hadolint, yamllint, kubernetes-validate, tsc,
# buildah, ...). All the work is in install-tools.sh, which is idempotent and fails
# loudly when a tool is missing afterwards; tests find the tools in ${CI_TOOLS:-/opt/alb-ci-tools}/bin.
set -eu
exec bash "$(dirname "$0")/install-tools.sh"
