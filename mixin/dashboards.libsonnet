{ grafanaDashboards+:: { 'alb-jobs-exporter.json': import 'dashboard.json' } }
