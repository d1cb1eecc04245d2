"""Suite-wide rules. Under CI (CI=true), a test marked `ci_required` that skips is a failure:
a green run that silently skipped the PostgreSQL or crash tests proves nothing."""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

# One PostgreSQL server for every test module that needs it; the council fixtures
# (council_db_url, council_db_on_each_engine) for any test that names them.
pytest_plugins = ["tests.postgres", "tests.council_server"]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, None, None]:
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("CI") and item.get_closest_marker("ci_required"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"CI requires this test but it was skipped: {reason}"
