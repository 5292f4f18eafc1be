// The Grafana dashboard, plain JSON model (schemaVersion 39), no grafonnet.
//
// Failures first: a stat row (failures in the range, stuck jobs, targets down, credentials),
// the failure bars with job_id exemplars, the failures by error code and the recent failed
// jobs; then stuck jobs, jobs by status, durations, and the exporter's own health.
// Every query filters on the cluster, job, account and region variables.
local failures = import 'lib/failures.libsonnet';
local promql = import 'lib/promql.libsonnet';

{
  local cfg = $._config,
  local datasource = { type: 'prometheus', uid: '${datasource}' },

  // Matchers of the variables: per exporter, and per target (account/region).
  local exporterVars = ['%s=~"$cluster"' % cfg.clusterLabel, 'job=~"$job"'],
  local targetVars = exporterVars + ['account=~"$account"', 'region=~"$region"'],
  local accountVars = exporterVars + ['account=~"$account"'],
  local t(name, extra=[]) = promql.selector(cfg, name, targetVars + extra),

  // --- panels ---------------------------------------------------------------------------
  local target(expr, legend='', instant=false, table=false, exemplar=false) = {
    datasource: datasource,
    expr: expr,
    refId: 'A',
    [if legend != '' then 'legendFormat']: legend,
    [if instant then 'instant']: true,
    range: !instant,
    [if table then 'format']: 'table',
    [if exemplar then 'exemplar']: true,
  },
  local thresholds(steps) = {
    mode: 'absolute',
    steps: [{ color: s[0], value: s[1] } for s in steps],
  },
  local grid(x, y, w, h) = { x: x, y: y, w: w, h: h },

  local row(title, y) = {
    type: 'row',
    title: title,
    collapsed: false,
    gridPos: grid(0, y, 24, 1),
    panels: [],
  },

  local stat(title, description, expr, pos, unit='', steps=[['green', null]], legend='') = {
    type: 'stat',
    title: title,
    description: description,
    datasource: datasource,
    gridPos: pos,
    fieldConfig: {
      defaults: {
        [if unit != '' then 'unit']: unit,
        thresholds: thresholds(steps),
        color: { mode: 'thresholds' },
      },
      overrides: [],
    },
    options: {
      reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
      colorMode: 'background',
      graphMode: 'none',
      textMode: if legend != '' then 'value_and_name' else 'value',
    },
    targets: [target(expr, legend=legend, instant=true)],
  },

  local timeseries(title, description, targets, pos, unit='', bars=false, stacked=false, min=0) = {
    type: 'timeseries',
    title: title,
    description: description,
    datasource: datasource,
    gridPos: pos,
    fieldConfig: {
      defaults: {
        [if unit != '' then 'unit']: unit,
        custom: {
          drawStyle: if bars then 'bars' else 'line',
          lineWidth: 1,
          fillOpacity: if bars then 80 else 10,
          showPoints: 'never',
          spanNulls: false,
          [if stacked then 'stacking']: { mode: 'normal', group: 'A' },
        },
        [if min != null then 'min']: min,
      },
      overrides: [],
    },
    options: {
      legend: { displayMode: 'table', placement: 'right', calcs: ['lastNotNull', 'max'], showLegend: true },
      tooltip: { mode: 'multi', sort: 'desc' },
    },
    targets: targets,
  },

  // A table of one instant query whose by-clause already picked the columns; `columns` is
  // [[label, header], ...] in display order, the value last.
  local table(title, description, expr, pos, columns, valueHeader, unit='', sortDesc=true) = {
    type: 'table',
    title: title,
    description: description,
    datasource: datasource,
    gridPos: pos,
    fieldConfig: {
      defaults: {
        [if unit != '' then 'unit']: unit,
        custom: { align: 'auto', filterable: true },
      },
      overrides: [],
    },
    options: {
      showHeader: true,
      cellHeight: 'sm',
      footer: { show: false },
      sortBy: [{ displayName: valueHeader, desc: sortDesc }],
    },
    targets: [target(expr, instant=true, table=true)],
    transformations: [
      { id: 'merge', options: {} },
      {
        id: 'organize',
        options: {
          excludeByName: { Time: true },
          indexByName: { [columns[i][0]]: i for i in std.range(0, std.length(columns) - 1) } + { Value: std.length(columns) },
          renameByName: { [c[0]]: c[1] for c in columns } + { Value: valueHeader },
        },
      },
    ],
  },

  // --- the queries ----------------------------------------------------------------------
  local failuresInRange = failures.inWindow(cfg, '$__range', targetVars),
  // Failures per bar: the exact change of each counter from one step to the next (the
  // previous value read `offset $__interval` back; a series born within the step counts
  // whole). increase() would extrapolate and, over windows of one step, lose the jumps that
  // fall between two windows; over $__rate_interval windows, which overlap, it draws one
  // failure in several bars. `max` per label set: an HA pair counts each job twice.
  local failureBars =
    local byAll = promql.by(cfg, ['account', 'region', 'resource_type', 'api_name', 'error_code']);
    local now = 'max by (%s) (%s)' % [byAll, t('alb_async_jobs_failures_total')];
    local before = 'max by (%s) (%s offset $__interval)' % [byAll, t('alb_async_jobs_failures_total')];
    'sum by (api_name, error_code) (clamp_min(%s - (%s or %s * 0), 0))' % [now, before, now],
  local oldest = t('alb_async_job_processing_oldest_created_timestamp_seconds'),
  local apiRequests(extra=[]) = t('alb_exporter_api_requests_total', extra),

  local panels = [
    row('Failures', 0),
    stat(
      'Failures in range',
      'Jobs that failed within the time range, counted once each (alb_async_jobs_failures_total, as AlbAsyncJobFailed counts them).',
      'sum(%s) or vector(0)' % std.rstripChars(failuresInRange, '\n'),
      grid(0, 1, 4, 4),
      steps=[['green', null], ['red', 1]],
    ),
    stat(
      'Stuck jobs',
      'APIs whose oldest job has been Processing for over %s (AlbAsyncJobStuck).' % promql.humanize(cfg.jobStuckSeconds),
      'count(time() - %s > %d) or vector(0)' % [oldest, cfg.jobStuckSeconds],
      grid(4, 1, 4, 4),
      steps=[['green', null], ['red', 1]],
    ),
    stat(
      'Targets down',
      "Account/region targets whose last refresh failed (alb_exporter_up == 0): see the exporter's log and 'API calls by code'.",
      'count(%s == 0) or vector(0)' % t('alb_exporter_up'),
      grid(8, 1, 4, 4),
      steps=[['green', null], ['red', 1]],
    ),
    stat(
      'Credentials expire in',
      'The soonest expiry of the temporary credentials in use (RRSA, AssumeRole, ECS role). The exporter renews them 15 minutes before; AlbJobsExporterCredentialsExpiring fires under %s. Empty with long-lived AccessKeys.' % promql.humanize(cfg.credentialsExpirySeconds),
      'min(%s - time())' % promql.selector(cfg, 'alb_exporter_credentials_expiry_timestamp_seconds', accountVars),
      grid(12, 1, 4, 4),
      unit='s',
      steps=[['red', null], ['orange', cfg.credentialsExpirySeconds], ['green', 900]],
    ),
    stat(
      'Failed jobs in lookback',
      'Failed jobs among those created within the lookback window (alb_async_jobs_failed).',
      'sum(%s) or vector(0)' % t('alb_async_jobs_failed'),
      grid(16, 1, 4, 4),
      steps=[['green', null], ['orange', 1]],
    ),
    stat(
      'Jobs processing',
      'Jobs now Processing (alb_async_jobs{status="Processing"}).',
      'sum(%s) or vector(0)' % t('alb_async_jobs', ['status="Processing"']),
      grid(20, 1, 4, 4),
    ),
    timeseries(
      'Failures by API and error code',
      'Jobs that failed, one bar per step by API and error code: a failure is counted in exactly one bar. Hover a bar for its exemplar (the newest failed job, job_id) and follow the link to its event line (docs/deploy.md, "From the alert to the failed job").',
      [target(failureBars, legend='{{api_name}} {{error_code}}', exemplar=true)],
      grid(0, 5, 16, 9),
      bars=true,
      stacked=true,
    ) {
      // The step is at least a scrape interval, and bars stay wide enough to hover.
      interval: '1m',
      maxDataPoints: 200,
    },
    table(
      'Failures in range by error code',
      'Failed jobs within the time range per account, region, API and error code (alb_async_jobs_failures_total).',
      'sort_desc(sum by (account, region, api_name, error_code) (%s) > 0)' % std.rstripChars(failuresInRange, '\n'),
      grid(16, 5, 8, 9),
      [['account', 'Account'], ['region', 'Region'], ['api_name', 'API'], ['error_code', 'Error code']],
      'Failures',
    ),
    table(
      'Recent failed jobs',
      "The newest failed jobs per target (alb_async_job_recent_failure_timestamp_seconds): job id, resource id, API and error code. The ErrorMessage is in the job events (job_events) and on the exporter's landing page.",
      'sort_desc(max by (account, region, job_id, resource_id, api_name, error_code) (%s) * 1000)' % t('alb_async_job_recent_failure_timestamp_seconds'),
      grid(0, 14, 24, 8),
      [['account', 'Account'], ['region', 'Region'], ['job_id', 'Job id'], ['resource_id', 'Resource id'], ['api_name', 'API'], ['error_code', 'Error code']],
      'Failed at',
      unit='dateTimeAsIso',
    ),

    row('Stuck jobs', 22),
    table(
      'Oldest processing job per API',
      'How long the oldest still-Processing job of each API has been running (time() - alb_async_job_processing_oldest_created_timestamp_seconds). AlbAsyncJobStuck fires above %s.' % promql.humanize(cfg.jobStuckSeconds),
      'sort_desc(max by (account, region, resource_type, api_name) (time() - %s))' % oldest,
      grid(0, 23, 18, 7),
      [['account', 'Account'], ['region', 'Region'], ['resource_type', 'Resource type'], ['api_name', 'API']],
      'Processing for',
      unit='s',
    ),
    stat(
      'Vanished jobs (range)',
      'Jobs seen Processing that left the listing without a terminal status, within the range (alb_async_jobs_vanished_total).',
      'sum(increase(%s[$__range])) or vector(0)' % t('alb_async_jobs_vanished_total'),
      grid(18, 23, 6, 7),
      steps=[['green', null], ['orange', 1]],
    ),

    row('Jobs', 30),
    timeseries(
      'Jobs in lookback window by status',
      'Jobs created within the lookback window, by current status (alb_async_jobs).',
      [target('sum by (status) (%s)' % t('alb_async_jobs'), legend='{{status}}')],
      grid(0, 31, 8, 8),
      stacked=true,
    ),
    timeseries(
      'Jobs finished per minute by status',
      'Jobs reaching Succeeded or Failed, per minute (rate of alb_async_jobs_finished_total).',
      [target('sum by (status) (rate(%s[$__rate_interval])) * 60' % t('alb_async_jobs_finished_total'), legend='{{status}}')],
      grid(8, 31, 8, 8),
    ),
    timeseries(
      'Failed jobs by error code',
      'Failed jobs among those created within the lookback window, by error code (alb_async_jobs_failed); an empty code means the API gave none.',
      [target('sum by (error_code) (%s)' % t('alb_async_jobs_failed'), legend='{{error_code}}')],
      grid(16, 31, 8, 8),
      stacked=true,
    ),
    timeseries(
      'Jobs in lookback window by API',
      'Jobs created within the lookback window by API and status (alb_async_jobs).',
      [target('sum by (api_name, status) (%s)' % t('alb_async_jobs'), legend='{{api_name}} {{status}}')],
      grid(0, 39, 8, 8),
    ),
    timeseries(
      'Succeeded job duration percentiles',
      'p50, p90 and p99 of ModifyTime - CreateTime of Succeeded jobs (alb_async_job_duration_seconds); empty while no job finishes.',
      [
        target(
          'histogram_quantile(%s, sum by (le) (rate(%s[$__rate_interval])))' % [q[0], t('alb_async_job_duration_seconds_bucket', ['status="Succeeded"'])],
          legend=q[1],
        ) { refId: q[2] }
        for q in [['0.5', 'p50', 'A'], ['0.9', 'p90', 'B'], ['0.99', 'p99', 'C']]
      ],
      grid(8, 39, 8, 8),
      unit='s',
    ),
    timeseries(
      'p90 duration by status',
      "p90 duration of Succeeded and of Failed jobs. For a line per API add api_name to the exporter's metrics.duration_labels and to this query's by (le, status).",
      [target('histogram_quantile(0.9, sum by (le, status) (rate(%s[$__rate_interval])))' % t('alb_async_job_duration_seconds_bucket'), legend='{{status}}')],
      grid(16, 39, 8, 8),
      unit='s',
    ),

    row('Exporter health', 47),
    stat(
      'Targets up',
      'Account/region targets whose last refresh succeeded.',
      'sum(%s)' % t('alb_exporter_up'),
      grid(0, 48, 4, 4),
    ),
    stat(
      'Oldest data',
      'Age of the oldest data served: max over targets of time() - alb_exporter_last_success_timestamp_seconds.',
      'max(time() - %s)' % t('alb_exporter_last_success_timestamp_seconds'),
      grid(4, 48, 4, 4),
      unit='s',
      steps=[['green', null], ['orange', 300], ['red', cfg.dataStaleSeconds]],
    ),
    stat(
      'Throttled calls (range)',
      'Share of ListAsynJobs calls throttled within the range.',
      '(sum(increase(%s[$__range])) or vector(0)) / sum(increase(%s[$__range]))' % [apiRequests(['code=~"Throttling.*"']), apiRequests()],
      grid(8, 48, 4, 4),
      unit='percentunit',
      steps=[['green', null], ['orange', 0.05], ['red', cfg.throttlingRatio]],
    ),
    stat(
      'Exporter version',
      'Versions of the exporter replicas (alb_exporter_build_info).',
      'count by (version) (%s)' % promql.selector(cfg, 'alb_exporter_build_info', exporterVars),
      grid(12, 48, 12, 4),
      legend='{{version}}',
    ),
    timeseries(
      'Target up',
      'alb_exporter_up per account/region: 1 when the last refresh succeeded.',
      [target(t('alb_exporter_up'), legend='{{account}}/{{region}}')],
      grid(0, 52, 8, 8),
    ),
    timeseries(
      'Data age',
      'time() - alb_exporter_last_success_timestamp_seconds per target.',
      [target('time() - %s' % t('alb_exporter_last_success_timestamp_seconds'), legend='{{account}}/{{region}}')],
      grid(8, 52, 8, 8),
      unit='s',
    ),
    timeseries(
      'Refresh duration',
      'Wall time of the last refresh per target.',
      [target(t('alb_exporter_refresh_duration_seconds'), legend='{{account}}/{{region}}')],
      grid(16, 52, 8, 8),
      unit='s',
    ),
    timeseries(
      'API calls by code',
      'ListAsynJobs calls per second by result code (OK, the API error code, Timeout, TransportError, MalformedResponse).',
      [target('sum by (code) (rate(%s[$__rate_interval]))' % apiRequests(), legend='{{code}}')],
      grid(0, 60, 8, 8),
      unit='reqps',
      stacked=true,
    ),
    timeseries(
      'Throttled share',
      'Share of throttled calls per target; AlbJobsExporterThrottling fires above %d%% for %s.' % [cfg.throttlingRatio * 100, cfg.throttlingFor],
      [target(
        '(sum by (account, region) (rate(%(throttled)s[$__rate_interval])) or sum by (account, region) (rate(%(all)s[$__rate_interval])) * 0) / sum by (account, region) (rate(%(all)s[$__rate_interval]))' % {
          throttled: apiRequests(['code=~"Throttling.*"']),
          all: apiRequests(),
        },
        legend='{{account}}/{{region}}',
      )],
      grid(8, 60, 8, 8),
      unit='percentunit',
    ),
    timeseries(
      'Credentials: time to expiry',
      'alb_exporter_credentials_expiry_timestamp_seconds - time() per account and source: a saw-tooth while renewals work; a line falling towards 0 means renewal fails.',
      [target('%s - time()' % promql.selector(cfg, 'alb_exporter_credentials_expiry_timestamp_seconds', accountVars), legend='{{account}} ({{source}})')],
      grid(16, 60, 8, 8),
      unit='s',
    ),
  ],

  local variable(name, label, query) = {
    type: 'query',
    name: name,
    label: label,
    datasource: datasource,
    query: { query: query, refId: name + '-query' },
    refresh: 2,
    sort: 1,
    multi: true,
    includeAll: true,
    // Matches series without the label too: one Prometheus per cluster has no cluster label.
    allValue: '.*',
    current: { selected: true, text: ['All'], value: ['$__all'] },
  },
  local up(matchers) = promql.selector(cfg, 'alb_exporter_up', matchers),

  grafanaDashboards+:: {
    'alb-jobs-exporter.json': {
      title: cfg.dashboardTitle,
      uid: cfg.dashboardUID,
      description: 'Alibaba Cloud ALB asynchronous jobs (ListAsynJobs) from alb-jobs-exporter: failures first, then stuck jobs, jobs by status, durations and exporter health.',
      tags: cfg.dashboardTags,
      editable: true,
      graphTooltip: 1,
      schemaVersion: 39,
      version: 1,
      refresh: cfg.dashboardRefresh,
      time: { from: 'now-6h', to: 'now' },
      timezone: cfg.dashboardTimezone,
      fiscalYearStartMonth: 0,
      liveNow: false,
      links: [],
      annotations: {
        list: [{
          builtIn: 1,
          datasource: { type: 'grafana', uid: '-- Grafana --' },
          enable: true,
          hide: true,
          iconColor: 'rgba(0, 211, 255, 1)',
          name: 'Annotations & Alerts',
          type: 'dashboard',
        }],
      },
      templating: {
        list: [
          {
            type: 'datasource',
            name: 'datasource',
            label: 'Data source',
            query: 'prometheus',
            refresh: 1,
            regex: '',
            hide: 0,
            includeAll: false,
            multi: false,
            options: [],
          },
          variable('cluster', 'Cluster', 'label_values(%s, %s)' % [up([]), cfg.clusterLabel]),
          variable('job', 'Job', 'label_values(%s, job)' % up([exporterVars[0]])),
          variable('account', 'Account', 'label_values(%s, account)' % up(exporterVars)),
          variable('region', 'Region', 'label_values(%s, region)' % up(exporterVars + ['account=~"$account"'])),
        ],
      },
      panels: std.mapWithIndex(function(i, p) p { id: i + 1 }, panels),
    },
  },
}
