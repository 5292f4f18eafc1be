// Small helpers shared by the alerts and the dashboard: selectors built from the
// configured matchers, and duration strings turned into seconds.
{
  // `name{m1, m2, ...}` with the configured selector first; just `name` without matchers.
  selector(cfg, name, matchers=[])::
    local all = std.filter(function(m) m != '', [cfg.selector] + matchers);
    if std.length(all) == 0 then name else '%s{%s}' % [name, std.join(', ', all)],

  // `by (...)` label lists always start with the cluster label: several clusters in one
  // Prometheus (or Thanos) must never be summed together.
  by(cfg, labels):: std.join(', ', [cfg.clusterLabel] + labels),

  // Seconds in a Prometheus duration such as '90s', '10m', '1h30m' or '1d'.
  seconds(duration)::
    local units = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400, w: 604800, y: 31536000 };
    local isDigit(c) = std.member('0123456789', c);
    local settle(s) =
      if s.digits == '' then s
      else s { total: s.total + std.parseInt(s.digits) * units[s.unit], digits: '', unit: '' };
    // A number ends where the next number starts: settle the pending one first.
    local step(s, c) =
      if !isDigit(c) then s { unit+: c }
      else if s.unit != '' then settle(s) { digits: c }
      else s { digits+: c };
    settle(std.foldl(step, std.stringChars(duration), { total: 0, digits: '', unit: '' })).total,

  // A PromQL string literal's body for a regular expression matching exactly `values`.
  anyOf(values)::
    local special = '\\.+*?()|[]{}^$';
    local escape(v) = std.join('', [
      if std.member(special, c) then '\\\\' + c else c
      for c in std.stringChars(v)
    ]);
    std.join('|', [escape(v) for v in values]),

  // '30m', '1h', '90s': a whole number of the largest unit that divides `seconds`.
  humanize(seconds)::
    if seconds % 3600 == 0 then '%dh' % (seconds / 3600)
    else if seconds % 60 == 0 then '%dm' % (seconds / 60)
    else '%ds' % seconds,
}
