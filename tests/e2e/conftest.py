"""Fixtures shared by the end-to-end tests: a log dir per test, and a list
of started processes that are stopped (and checked: exit status, sanitizer
reports) when the test ends."""

import pytest


@pytest.fixture
def logdir(tmp_path):
    return str(tmp_path)


@pytest.fixture
def procs():
    started = []
    yield started
    errors = []
    for p in reversed(started):
        try:
            p.stop()
        except AssertionError as e:
            errors.append(str(e))
    assert not errors, "\n".join(errors)
