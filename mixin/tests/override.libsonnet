// A user's overrides, as in docs/deploy.md "Monitoring mixin": another selector, another
// cluster label, thresholds, an ignored error code and a disabled alert. The rules this
// renders must pass `promtool check rules` and override_test.yaml.
{
  _config+:: {
    selector: 'job="alb", namespace="ops"',
    clusterLabel: 'k8s_cluster',
    jobFailedThreshold: 3,
    jobFailedWindow: '30m',
    jobFailedIgnoredErrorCodes: ['Conflict.Lock', 'OperationDenied.ResourceLocked'],
    jobStuckSeconds: 3600,
    disabledAlerts: ['AlbJobsExporterDataStale'],
  },
}
