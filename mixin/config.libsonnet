// What a user tunes when importing the mixin:
//
//   (import 'mixin.libsonnet') + { _config+:: { selector: 'job="alb"', jobFailedThreshold: 3 } }
//
// Every expression of the alerts and the dashboard is built from these values; the
// rendered files in helm/alb-jobs-exporter/files/ are this mixin with these defaults.
{
  _config+:: {
    // Label matchers added to every selector, e.g. 'job="alb-jobs-exporter"' when other
    // jobs could expose the same names. Empty: the alb_* names are this exporter's own.
    selector: '',
    // The label that tells clusters apart in a Prometheus (or Thanos) holding several:
    // aggregating alerts keep it and the dashboard has a variable for it.
    clusterLabel: 'cluster',
    // The labels that tell one sharded deployment from another (the scrape job, and with
    // the operator its namespace): shard alerts count replicas within each.
    shardGroupLabels: ['job', 'namespace'],

    // AlbAsyncJobFailed: at least `threshold` jobs of one account/region/API failed with one
    // error code within `window`, for `for`. Codes in `ignoredErrorCodes` never alert
    // (routine retries such as Conflict.Lock); Alertmanager can also route and silence on
    // the `error_code` label.
    jobFailedWindow: '10m',
    jobFailedThreshold: 1,
    jobFailedFor: '1m',
    jobFailedSeverity: 'warning',
    jobFailedIgnoredErrorCodes: [],

    // AlbAsyncJobStuck: a job Processing for longer than this.
    jobStuckSeconds: 1800,
    jobStuckFor: '5m',

    // AlbJobsExporterTargetDown: a target's refreshes failing for this long.
    targetDownFor: '10m',
    // AlbJobsExporterDataStale: data older than this many seconds.
    dataStaleSeconds: 600,
    // AlbJobsExporterThrottling: the throttled share of ListAsynJobs calls.
    throttlingRatio: 0.2,
    throttlingFor: '15m',
    configReloadFailedFor: '5m',

    // Sharding: a shard missing or claimed twice, and replicas disagreeing on the count.
    shardMissingFor: '10m',
    // Longer than a StatefulSet takes to roll every replica onto a new --shard.count.
    shardCountMismatchFor: '15m',

    // AlbJobsExporterDiscoveryFailing: no successful listing for this many seconds while
    // discovery calls fail. Keep it a few times discovery.interval (default 10m).
    discoveryFailingSeconds: 1800,
    discoveryFailingFor: '5m',

    // AlbJobsExporterCredentialsExpiring: temporary credentials expiring within this many
    // seconds. The exporter renews them with 15 minutes (or a third of their lifetime) to
    // spare, so being this close means renewal keeps failing.
    credentialsExpirySeconds: 300,
    credentialsExpiryFor: '1m',

    // Each alert's runbook_url is this followed by '#' and the alert name in lower case.
    runbookURLBase: 'https://github.com/alb-jobs-exporter/alb-jobs-exporter/blob/main/docs/runbook.md',

    // Alerts to leave out entirely, by name.
    disabledAlerts: [],

    dashboardUID: 'alb-async-jobs',
    dashboardTitle: 'ALB async jobs',
    dashboardTags: ['alibaba-cloud', 'alb', 'alb-jobs-exporter'],
    dashboardRefresh: '1m',
    dashboardTimezone: 'browser',
  },
}
