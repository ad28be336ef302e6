"""Soak tests (issue "Reliability ... N processes behave as one").

Markers:
  soak    bounded reliability runs (kills, database restarts, several processes);
          deselect with -m "not soak".
  serial  must never run beside other tests (it restarts the shared PostgreSQL
          server); run alone with -m serial -p no:xdist.
Sizes come from SOAK_* environment variables (see tests/soak/support.py); the
defaults are the CI form, `make soak` runs the larger one.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", 'soak: bounded reliability soak test (deselect with -m "not soak")'
    )
    config.addinivalue_line(
        "markers",
        "serial: must not run in parallel with any other test "
        "(run alone: pytest -m serial -p no:xdist)",
    )
