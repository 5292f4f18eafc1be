#!/usr/bin/env bash
# Type-check a Grafana dashboard JSON against Grafana's own generated TypeScript types
# (@grafana/schema's classic `Dashboard` model, which schemaVersion 39 dashboards use).
#
#   ci/check-dashboard-types.sh [DASHBOARD_JSON]   (default: the chart's files/dashboard.json)
#
# Needs tsc and @grafana/schema from ci/install-tools.sh ($GRAFANA_TS_DIR).
# JSON cannot spell a TypeScript string enum member (ThresholdsMode.Absolute is
# "absolute" at run time, but the literal "absolute" is not assignable to the enum
# type), so the dashboard is checked against JsonOf<Dashboard>: the same type with
# every string enum replaced by the union of its values. Everything else (unknown
# keys, missing required fields, wrong types, numeric enums) is checked as is.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DASHBOARD="${1:-$HERE/../helm/alb-jobs-exporter/files/dashboard.json}"
[[ -f "${CI_TOOLS:-/opt/alb-ci-tools}/env.sh" ]] && . "${CI_TOOLS:-/opt/alb-ci-tools}/env.sh"
TS_DIR="${GRAFANA_TS_DIR:-${CI_TOOLS:-/opt/alb-ci-tools}/grafana-ts}"
[[ -d "$TS_DIR/node_modules/@grafana/schema" ]] || { echo "no @grafana/schema in $TS_DIR: run ci/install-tools.sh" >&2; exit 1; }
[[ -f "$DASHBOARD" ]] || { echo "$DASHBOARD: no such file" >&2; exit 1; }

check_ts="$(mktemp "$TS_DIR/dashboard-check-XXXXXX")"
mv "$check_ts" "$check_ts.ts"; check_ts="$check_ts.ts"
trap 'rm -f "$check_ts"' EXIT
{
    cat <<'TS'
import type { Dashboard } from '@grafana/schema';
type JsonOf<T> =
  T extends string ? `${T}` :
  T extends number | boolean | null | undefined ? T :
  T extends ReadonlyArray<infer U> ? Array<JsonOf<U>> :
  T extends object ? { [K in keyof T]: JsonOf<T[K]> } :
  T;
export const dashboard = (
TS
    cat "$DASHBOARD"
    printf '\n) satisfies JsonOf<Dashboard>;\n'
} >"$check_ts"
cd "$TS_DIR"
./node_modules/.bin/tsc --noEmit --strict --target es2022 --module nodenext \
    --moduleResolution nodenext --skipLibCheck "$(basename "$check_ts")"
echo "tsc: $DASHBOARD satisfies @grafana/schema Dashboard"
