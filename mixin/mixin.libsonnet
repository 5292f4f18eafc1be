// alb-jobs-exporter's monitoring mixin (the kube-prometheus convention):
//
//   local albJobs = (import 'alb-jobs-exporter/mixin/mixin.libsonnet') + {
//     _config+:: { selector: 'job="alb-jobs-exporter"', jobFailedThreshold: 3 },
//   };
//   { 'alb-jobs-alerts.yaml': std.manifestYamlDoc(albJobs.prometheusAlerts) }
//
// No dependencies: no grafonnet, nothing vendored. helm/alb-jobs-exporter/files/alerts.yaml
// and dashboard.json are this mixin rendered with the defaults (`make mixin`).
(import 'config.libsonnet') +
(import 'alerts.libsonnet') +
(import 'dashboards.libsonnet')
