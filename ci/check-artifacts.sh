#!/usr/bin/env bash
# Static checks of the deployment artifacts with the real tools (ci/install-tools.sh):
#   hadolint (Dockerfile), yamllint (rules, values, Chart.yaml, ci values),
#   helm lint --strict + helm template | kubernetes-validate --strict per ci values file,
#   the ServiceMonitor/PodMonitor against prometheus-operator's CRD schemas (strictly),
#   the exporter's own --check-config on each rendered config (with the shard flags),
#   the monitoring mixin: rendered files equal mixin/ (drift), jsonnetfmt --test,
#   promtool check rules / test rules (alerts and the PrometheusRule the chart renders),
#   tsc against @grafana/schema and promtool parsing of the dashboard's PromQL.
# Every step runs; the script fails at the end if any failed.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
CHART="$ROOT/helm/alb-jobs-exporter"
TOOLS="${CI_TOOLS:-/opt/alb-ci-tools}"
[[ -f "$TOOLS/env.sh" ]] && . "$TOOLS/env.sh"
# kubernetes-validate's venv has PyYAML; the host python3 may not.
PY="$TOOLS/venv/bin/python"
[[ -x "$PY" ]] || PY=python3
# The exporter itself, for --check-config of the rendered configs (`make test` builds it).
EXPORTER_PY="${EXPORTER_PYTHON:-$ROOT/.venv/bin/python}"
[[ -x "$EXPORTER_PY" ]] || { echo "$EXPORTER_PY not found: run make .venv/.installed-stamp" >&2; exit 1; }
# Oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schemas bundled.
K8S_VERSIONS=(1.25.0 1.37.0)

for tool in hadolint yamllint helm kubernetes-validate promtool tsc jsonnetfmt; do
    command -v "$tool" >/dev/null || { echo "$tool not found: run ci/install-tools.sh" >&2; exit 1; }
done

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
failed=()
step() {
    local name=$1; shift
    local t0=$SECONDS
    if "$@" >"$WORK/out" 2>&1; then
        printf 'PASS  %-58s (%ss)\n' "$name" $((SECONDS - t0))
    else
        printf 'FAIL  %-58s (%ss)\n' "$name" $((SECONDS - t0))
        sed 's/^/      /' "$WORK/out" | tail -n 40
        failed+=("$name")
    fi
}

# Drop the prometheus-operator kinds: kubernetes-validate only ships the built-in
# Kubernetes schemas, and in --strict mode an unknown kind is an error. The monitors are
# checked against prometheus-operator's schemas (ci/validate_monitors.py), the
# PrometheusRule's rules by promtool below.
builtin_only() {
    "$PY" -c '
import sys, yaml
docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
keep = [d for d in docs if d.get("kind") not in ("ServiceMonitor", "PodMonitor", "PrometheusRule")]
yaml.safe_dump_all(keep, sys.stdout, sort_keys=False)
'
}
prometheusrule_spec() {
    "$PY" -c '
import sys, yaml
docs = [d for d in yaml.safe_load_all(sys.stdin) if d and d.get("kind") == "PrometheusRule"]
assert len(docs) == 1, f"expected one PrometheusRule, got {len(docs)}"
yaml.safe_dump(docs[0]["spec"], sys.stdout, sort_keys=False)
'
}

helm_values_check() {
    local values=$1 k
    helm lint --strict "$CHART" -f "$values"
    helm template rel "$CHART" --namespace monitoring -f "$values" >"$WORK/rendered.yaml"
    builtin_only <"$WORK/rendered.yaml" >"$WORK/builtin.yaml"
    for k in "${K8S_VERSIONS[@]}"; do
        kubernetes-validate --strict --quiet -k "$k" "$WORK/builtin.yaml"
    done
    "$PY" "$HERE/validate_monitors.py" "$WORK/rendered.yaml"
    if grep -q '^kind: PrometheusRule' "$WORK/rendered.yaml"; then
        prometheusrule_spec <"$WORK/rendered.yaml" >"$WORK/rendered-rules.yaml"
        promtool check rules "$WORK/rendered-rules.yaml"
    fi
    # A values typo must fail here, not as a crash-looping pod: the rendered config goes
    # through the exporter's strict loader, once per shard a StatefulSet would run.
    (cd "$ROOT" && "$EXPORTER_PY" "$HERE/check_rendered_config.py" "$WORK/rendered.yaml")
}

dashboard_promql() {
    python3 "$HERE/dashboard_rules.py" "$CHART/files/dashboard.json" >"$WORK/dashboard-rules.yaml"
    promtool check rules "$WORK/dashboard-rules.yaml"
}

# Relative paths: yamllint.yaml's ignore patterns are relative to the repository.
cd "$ROOT"
step "hadolint Dockerfile" hadolint Dockerfile
step "yamllint rules, values, Chart.yaml, ci values" \
    yamllint --strict -c ci/yamllint.yaml helm/alb-jobs-exporter/files \
    helm/alb-jobs-exporter/values.yaml helm/alb-jobs-exporter/Chart.yaml \
    helm/alb-jobs-exporter/ci docker/config.yaml mixin/tests
step "mixin: files/alerts.yaml, dashboard.json, schema alert names match mixin/" \
    "$EXPORTER_PY" mixin/render.py --check
mapfile -t jsonnet_sources < <(find mixin -name '*.libsonnet' -o -name '*.jsonnet' | sort)
step "jsonnetfmt --test mixin/" jsonnetfmt --test "${jsonnet_sources[@]}"
step "promtool check rules files/alerts.yaml" promtool check rules "$CHART/files/alerts.yaml"
step "promtool test rules files/alerts_test.yaml" promtool test rules "$CHART/files/alerts_test.yaml"
for values in "$CHART"/ci/*-values.yaml; do
    step "helm lint+template+validate+check-config ci/$(basename "$values")" helm_values_check "$values"
done
step "tsc dashboard.json against @grafana/schema" "$HERE/check-dashboard-types.sh" "$CHART/files/dashboard.json"
step "promtool parses every dashboard expression" dashboard_promql

if ((${#failed[@]})); then
    printf '\n%d check(s) failed:\n' "${#failed[@]}"
    printf '  %s\n' "${failed[@]}"
    exit 1
fi
echo "all artifact checks passed"
