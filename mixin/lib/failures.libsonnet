// Failed jobs within a window, per label set: the one expression AlbAsyncJobFailed and the
// dashboard's failure counts share.
//
// A failures_total series is born at its error code's first failure, which increase()
// cannot see, so a series first seen within the window (none in the window before) counts
// with its whole value, also after it went stale (an exporter restart without state_file).
// That branch is gated on alb_async_jobs_finished_total{status="Failed"} of the same API
// having moved: those series exist at 0 before a first failure, and counters restored from
// the state file after a long scrape gap do not move them, so old failures are not
// replayed. `max` rather than `sum` per label set: an HA pair counts each job twice.
local promql = import 'promql.libsonnet';

{
  // Failures per (cluster, account, region, resource_type, api_name, error_code) within
  // `window`; `matchers` select the failures and the failed-jobs counter, `ignored` only
  // the failures (error codes left out).
  inWindow(cfg, window, matchers=[], ignored=[])::
    local failures = promql.selector(cfg, 'alb_async_jobs_failures_total', matchers + ignored);
    local finished = promql.selector(cfg, 'alb_async_jobs_finished_total', matchers + ['status="Failed"']);
    local all = promql.by(cfg, ['account', 'region', 'resource_type', 'api_name', 'error_code']);
    local api = promql.by(cfg, ['account', 'region', 'resource_type', 'api_name']);
    |||
      (
        max by (%(all)s) (
          max_over_time(%(failures)s[%(window)s])
          unless on (%(all)s) last_over_time(%(failures)s[%(window)s] offset %(window)s)
        )
        and on (%(api)s)
        max by (%(api)s) (increase(%(finished)s[%(window)s])) > 0
        or
        max by (%(all)s) (increase(%(failures)s[%(window)s]))
      )
    ||| % { all: all, api: api, failures: failures, finished: finished, window: window },
}
