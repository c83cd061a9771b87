"""Fixtures of the receipt tests: the providers' receipt secrets, and the receipt queue in Redis."""

import os

import pytest
import redis

import conftest
from messages_app import receipts

SECRET = "receipt-secret"
OTHER_SECRET = "other-secret"


@pytest.fixture
def receipt_settings(settings):
    settings.RECEIPT_SECRETS = {"kannel": SECRET, "other": OTHER_SECRET}
    settings.RECEIPT_QUEUE_URL = ""  # written as they come, unless a test queues them
    return settings


@pytest.fixture
def receipt_queue(receipt_settings):
    if not conftest.redis_available():
        (pytest.fail if os.environ.get("CI") else pytest.skip)("the receipt queue needs Redis")
    url = conftest.test_redis_url()
    receipt_settings.RECEIPT_QUEUE_URL = url
    queue = redis.Redis.from_url(url)
    queue.delete(receipts.QUEUE_KEY, receipts.WRITER_KEY)
    yield queue
    queue.delete(receipts.QUEUE_KEY, receipts.WRITER_KEY)
