"""A setting's former name keeps working for a release after it is renamed."""

import json

import pytest

from conftest import run_python

READ = "import django; django.setup(); from django.conf import settings; print(settings.SENDERS_PER_MAILING)"


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"SENDER_DISPATCHERS_PER_MAILING": "5"}, 5),
        ({"SENDERS_PER_MAILING": "3", "SENDER_DISPATCHERS_PER_MAILING": "5"}, 3),
        ({}, 2),
    ],
)
def test_senders_per_mailing_reads_its_former_name_when_it_is_not_set(variables, expected, monkeypatch):
    monkeypatch.delenv("SENDERS_PER_MAILING", raising=False)
    monkeypatch.delenv("SENDER_DISPATCHERS_PER_MAILING", raising=False)

    result = run_python(READ, **variables)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == expected
