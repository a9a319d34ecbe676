"""The production-mode tests cannot hide: a missing service fails them under CI=true, skips them otherwise."""

from __future__ import annotations

import os
import subprocess
import sys

from ..conftest import ROOT, free_port

# The smallest module that needs PostgreSQL; pointed at a port where nothing listens.
TARGET = "tests/integration/test_postgres_source.py"


def run_without_postgres(ci: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["CTPIPE_TEST_POSTGRES"] = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/postgres"
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", TARGET, "-q", "-rs", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def tests_in_target() -> int:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", TARGET, "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return sum(1 for line in done.stdout.splitlines() if line.startswith(TARGET + "::"))


def test_under_ci_a_missing_service_fails_the_tests():
    done = run_without_postgres("true")
    assert done.returncode == 1, done.stdout[-2000:]
    every = tests_in_target()
    assert every >= 2 and (f"{every} errors" in done.stdout or f"{every} failed" in done.stdout), done.stdout[-2000:]
    assert "PostgreSQL is not reachable" in done.stdout and "CI=true" in done.stdout


def test_without_ci_a_missing_service_skips_with_instructions():
    done = run_without_postgres(None)
    assert done.returncode == 0, done.stdout[-2000:]
    assert f"{tests_in_target()} skipped" in done.stdout
    assert "PostgreSQL is not reachable" in done.stdout and "CTPIPE_TEST_POSTGRES" in done.stdout
