// The alert rules. Every alert has a `severity` label and `summary`, `description` and
// `runbook_url` annotations; the runbook is docs/runbook.md, one section per alert.
local failures = import 'lib/failures.libsonnet';
local promql = import 'lib/promql.libsonnet';

{
  local cfg = $._config,
  local sel(name, matchers=[]) = promql.selector(cfg, name, matchers),
  local by(labels) = promql.by(cfg, labels),
  local runbook(name) = '%s#%s' % [cfg.runbookURLBase, std.asciiLower(name)],
  // The selector inside a Go template string literal (annotation queries).
  local templateSelector(matchers) =
    std.strReplace(std.join(',', std.filter(function(m) m != '', [cfg.selector] + matchers)), '"', '\\"'),

  local alert(name, expr, severity, summary, description, forDuration='') = {
    alert: name,
    expr: expr,
    [if forDuration != '' && forDuration != '0m' && forDuration != '0s' then 'for']: forDuration,
    labels: { severity: severity },
    annotations: {
      summary: summary,
      description: std.rstripChars(description, '\n'),
      runbook_url: runbook(name),
    },
  },
  local enabled(rules) = [r for r in rules if !std.member(cfg.disabledAlerts, r.alert)],

  // Identifies one alert of AlbAsyncJobFailed: error_code is a label, so Alertmanager can
  // route and silence by it.
  local failureLabels = ['account', 'region', 'resource_type', 'api_name', 'error_code'],
  local failureMatchers =
    if std.length(cfg.jobFailedIgnoredErrorCodes) == 0 then []
    else ['error_code!~"%s"' % promql.anyOf(cfg.jobFailedIgnoredErrorCodes)],
  local window = cfg.jobFailedWindow,

  prometheusAlerts+:: {
    groups+: [
      {
        name: 'alb-async-jobs',
        rules: enabled([
          // Failures within the window per error code (lib/failures.libsonnet says how a
          // first failure is seen and why restored counters cannot replay old ones).
          alert(
            'AlbAsyncJobFailed',
            '%s >= %s' % [std.rstripChars(failures.inWindow(cfg, window, ignored=failureMatchers), '\n'), cfg.jobFailedThreshold],
            cfg.jobFailedSeverity,
            'ALB {{ $labels.api_name }} jobs fail with {{ with $labels.error_code }}{{ . }}{{ else }}no error code{{ end }} in {{ $labels.account }}/{{ $labels.region }}',
            |||
              {{ printf "%%.0f" $value }} {{ $labels.api_name }} job(s) on {{ $labels.resource_type }} in account {{ $labels.account }}, region {{ $labels.region }} failed with error code {{ with $labels.error_code }}{{ . }}{{ else }}(none){{ end }} in the last %(window)s.
              {{- with printf "topk(5, %(recent)s{%(sel)saccount=%%q,region=%%q,api_name=%%q,error_code=%%q} > time()-%(seconds)d)" $labels.account $labels.region $labels.api_name $labels.error_code | query }}
              Recent failures:{{ range . }} job {{ .Labels.job_id }} on {{ .Labels.resource_id }};{{ end }}
              {{- end }}
            ||| % {
              window: window,
              recent: 'alb_async_job_recent_failure_timestamp_seconds',
              sel: if templateSelector([]) == '' then '' else templateSelector([]) + ',',
              seconds: promql.seconds(window) + 300,
            },
            cfg.jobFailedFor,
          ),

          alert(
            'AlbAsyncJobStuck',
            'time() - %s > %d' % [sel('alb_async_job_processing_oldest_created_timestamp_seconds'), cfg.jobStuckSeconds],
            'critical',
            'ALB {{ $labels.api_name }} job processing for over %s in {{ $labels.account }}/{{ $labels.region }}' % promql.humanize(cfg.jobStuckSeconds),
            'The oldest {{ $labels.api_name }} job on {{ $labels.resource_type }} in account {{ $labels.account }}, region {{ $labels.region }} has been Processing for {{ $value | humanizeDuration }}. ALB jobs normally finish within minutes; later writes to the same resource wait for it.',
            cfg.jobStuckFor,
          ),
        ]),
      },
      {
        name: 'alb-jobs-exporter',
        rules: enabled([
          alert(
            'AlbJobsExporterTargetDown',
            '%s == 0' % sel('alb_exporter_up'),
            'warning',
            'alb-jobs-exporter cannot list ALB jobs for {{ $labels.account }}/{{ $labels.region }}',
            'Every ListAsynJobs refresh of account {{ $labels.account }}, region {{ $labels.region }} has failed for %s; its job metrics are stale and its job alerts cannot fire.' % cfg.targetDownFor,
            cfg.targetDownFor,
          ),

          // Targets that never succeeded (timestamp 0) are TargetDown's.
          alert(
            'AlbJobsExporterDataStale',
            '(time() - %(ts)s > %(age)d) and %(ts)s > 0' % {
              ts: sel('alb_exporter_last_success_timestamp_seconds'),
              age: cfg.dataStaleSeconds,
            },
            'warning',
            'ALB job data for {{ $labels.account }}/{{ $labels.region }} is {{ $value | humanizeDuration }} old',
            'The last successful ListAsynJobs refresh of account {{ $labels.account }}, region {{ $labels.region }} was {{ $value | humanizeDuration }} ago. Either refreshes fail (see AlbJobsExporterTargetDown) or nothing scrapes the exporter often enough (refreshes happen on scrape, at most once per cache_ttl).',
          ),

          // rate over 5m and a long `for`: one throttled scrape leaves the 5m window long
          // before the `for` is up; only sustained throttling fires.
          alert(
            'AlbJobsExporterThrottling',
            |||
              sum by (%(by)s) (rate(%(throttled)s[5m]))
              / sum by (%(by)s) (rate(%(all)s[5m]))
              > %(ratio)s
            ||| % {
              by: by(['account', 'region']),
              throttled: sel('alb_exporter_api_requests_total', ['code=~"Throttling.*"']),
              all: sel('alb_exporter_api_requests_total'),
              ratio: cfg.throttlingRatio,
            },
            'warning',
            'ALB API throttles alb-jobs-exporter in {{ $labels.account }}/{{ $labels.region }}',
            "{{ $value | humanizePercentage }} of ListAsynJobs calls for account {{ $labels.account }}, region {{ $labels.region }} were throttled over the last %s. Data lags, and the account's other ALB API users share the quota." % cfg.throttlingFor,
            cfg.throttlingFor,
          ),

          alert(
            'AlbJobsExporterConfigReloadFailed',
            '%s == 0' % sel('alb_exporter_config_last_reload_successful'),
            'warning',
            'alb-jobs-exporter config reload failed',
            'The last reload of the config file (SIGHUP or POST /-/reload) of {{ $labels.instance }} failed; the exporter still runs with the previous config.',
            cfg.configReloadFailedFor,
          ),

          // count_values gives one series per ordinal reported, valued by how many replicas
          // report it: fewer ordinals than shards is a shard missing (its targets are not
          // refreshed at all, so no TargetDown fires for them); an ordinal reported twice is
          // two replicas listing the same targets. A series ends the moment its scrape fails,
          // so `for` lets a pod restart pass. With every replica gone nothing is left to count:
          // keep an `up == 0` alert for the scrape job.
          alert(
            'AlbJobsExporterShardMissing',
            |||
              count by (%(by)s) (count_values by (%(by)s) ("shard", %(ordinal)s))
              < max by (%(by)s) (%(total)s)
              or
              count_values by (%(by)s) ("shard", %(ordinal)s) > 1
            ||| % {
              by: by(cfg.shardGroupLabels),
              ordinal: sel('alb_exporter_shard_ordinal'),
              total: sel('alb_exporter_total_shards'),
            },
            'warning',
            '{{ if $labels.shard }}{{ $value }} alb-jobs-exporter replicas of {{ $labels.job }} claim shard {{ $labels.shard }}{{ else }}Only {{ $value }} alb-jobs-exporter shard(s) of {{ $labels.job }} report{{ end }}',
            '{{ if $labels.shard }}{{ $value }} replicas of job {{ $labels.job }} expose alb_exporter_shard_ordinal {{ $labels.shard }}: each refreshes the same targets, doubling their ALB API calls, while some other shard may have no replica.{{ else }}Only {{ $value }} distinct shards of job {{ $labels.job }} report, fewer than the {{ with printf "max(alb_exporter_total_shards{%sjob=%%q})" $labels.job | query }}{{ . | first | value }}{{ end }} their --shard.count says: the targets of each missing shard are not refreshed, so they have no job metrics and no job alerts.{{ end }}' % (if templateSelector([]) == '' then '' else templateSelector([]) + ','),
            cfg.shardMissingFor,
          ),

          // Replicas started with different --shard.count values split the targets by
          // different moduli: some targets are refreshed twice, others by nobody, and
          // ShardMissing compares against only the largest count.
          alert(
            'AlbJobsExporterShardCountMismatch',
            'count by (%(by)s) (count_values by (%(by)s) ("shards", %(total)s)) > 1' % {
              by: by(cfg.shardGroupLabels),
              total: sel('alb_exporter_total_shards'),
            },
            'warning',
            'alb-jobs-exporter replicas of {{ $labels.job }} disagree on the number of shards',
            'The replicas of job {{ $labels.job }} report {{ $value }} different alb_exporter_total_shards values:{{ range printf "sort_desc(count_values by (shards) (\\"shards\\", alb_exporter_total_shards{%sjob=%%q}))" $labels.job | query }} {{ .Value }} replica(s) say {{ .Labels.shards }};{{ end }} targets are split by different counts, so some are refreshed twice and others by no replica.' % (if templateSelector([]) == '' then '' else templateSelector([]) + ','),
            cfg.shardCountMismatchFor,
          ),

          // Discovery keeps the targets of its last successful listing, so a failing
          // listing only shows here: new accounts and regions are not picked up. Fires when
          // calls fail and the last success is older than a few intervals (or there is none).
          alert(
            'AlbJobsExporterDiscoveryFailing',
            |||
              (
                time() - %(last)s > %(age)d
                and
                sum without (code) (increase(%(errors)s[%(window)s])) > 0
              )
              or
              (
                sum without (code) (increase(%(errors)s[%(window)s])) > 0
                unless %(last)s
              )
            ||| % {
              last: sel('alb_exporter_discovery_last_success_timestamp_seconds'),
              errors: sel('alb_exporter_discovery_errors_total'),
              age: cfg.discoveryFailingSeconds,
              window: promql.humanize(cfg.discoveryFailingSeconds),
            },
            'warning',
            'alb-jobs-exporter discovery ({{ $labels.source }}) keeps failing{{ with $labels.account }} for account {{ . }}{{ end }}',
            'Discovery by {{ $labels.source }}{{ with $labels.account }} for account {{ . }}{{ end }} has had no successful listing for more than %s while its calls fail. The targets of the last successful listing are still refreshed, but new member accounts or regions are not picked up.' % promql.humanize(cfg.discoveryFailingSeconds),
            cfg.discoveryFailingFor,
          ),

          alert(
            'AlbJobsExporterCredentialsExpiring',
            '%s - time() < %d' % [sel('alb_exporter_credentials_expiry_timestamp_seconds'), cfg.credentialsExpirySeconds],
            'critical',
            'Temporary credentials of account {{ $labels.account }} expire in {{ $value | humanizeDuration }}',
            'The {{ $labels.source }} credentials alb-jobs-exporter uses for account {{ $labels.account }} expire in {{ $value | humanizeDuration }} and have not been renewed, although the exporter renews them 15 minutes (or a third of their lifetime) before they expire. Once they expire, every ListAsynJobs call of the account fails.',
            cfg.credentialsExpiryFor,
          ),
        ]),
      },
    ],
  },
}
