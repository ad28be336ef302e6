"""The dashboard: one static HTML page at `GET /` that talks to the JSON API."""
