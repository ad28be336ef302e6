"""`lossmon import`: predictions or actuals from CSV, Parquet or NDJSON files, sent
through the HTTP API (API.md "Bulk import (CLI)")."""
