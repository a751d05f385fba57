"""A loud closing summary of the tests that did not run, grouped by reason.

`make test` on a machine without Chromium, Redis or PostgreSQL passes with whole groups of tests
skipped; `-ra` lists them one line each among the rest. This block says how many, why, and what
`.ci/run` sets up so that they run.
"""

from __future__ import annotations

from collections import Counter

import pytest

# What `.ci/run` sets up for each part a test may be skipped for, found by a word of the reason.
REMEDIES = {
    "chromium": "Debian's Chromium: `apt-get install chromium`, as `.ci/run` does",
    "redis": "a Redis server and REDIS_URL=redis://127.0.0.1:6379/<n>, as `.ci/run` sets",
    "sentry": "sentry-sdk, from requirements.txt: `pip install -r requirements.txt`",
    "postgres": "a PostgreSQL server and DATABASE_URL=postgres://..., as `.ci/run` sets",
    "gettext": "GNU gettext: `apt-get install gettext`, as `.ci/run` does",
}


def skip_reason(report: pytest.TestReport) -> str:
    # A skip's longrepr is (path, line, "Skipped: reason").
    if isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    return str(report.longrepr)


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if r.skipped]
    if not skipped:
        return
    reasons = Counter(skip_reason(r) for r in skipped)
    terminalreporter.section(f"{len(skipped)} TESTS DID NOT RUN", sep="!", red=True, bold=True)
    for reason, count in reasons.most_common():
        terminalreporter.write_line(f"{count:5d} skipped: {reason}", yellow=True, bold=True)
        for part, remedy in REMEDIES.items():
            if part in reason.lower():
                terminalreporter.write_line(f"        to run them: {remedy}")
    terminalreporter.write_line("The result line below counts them as skipped, not as passed.", bold=True)
