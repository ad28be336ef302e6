"""Prometheus exposition: GET /metrics, the HTTP middleware, ingest counters and the
scrape-time database collector. Each app has its own CollectorRegistry (app.state)."""
