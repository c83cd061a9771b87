import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from messages_app.models import Message
from messages_app.tests.factories import MessageFactory


@pytest.mark.django_db
def test_any_finds_what_in_finds_with_the_ids_as_one_array_on_postgresql():
    messages = MessageFactory.create_batch(4)
    wanted = [messages[0].id, messages[2].id, None, messages[2].id, 10**12]

    with CaptureQueriesContext(connection) as queries:
        found = sorted(Message.objects.filter(id__any=wanted).values_list("id", flat=True))

    assert found == sorted(Message.objects.filter(id__in=wanted).values_list("id", flat=True))
    assert found == [messages[0].id, messages[2].id]
    assert ("= ANY(" in queries[0]["sql"]) == (connection.vendor == "postgresql")
    assert list(Message.objects.filter(id__any=[])) == []
    assert list(Message.objects.filter(id__any=[None])) == []


@pytest.mark.django_db
def test_any_takes_a_subquery_as_in_does():
    messages = MessageFactory.create_batch(3)
    first_two = Message.objects.filter(id__lte=messages[1].id).values("id")

    assert sorted(Message.objects.filter(id__any=first_two).values_list("id", flat=True)) == [
        messages[0].id,
        messages[1].id,
    ]
