"""messages_app.selectors' message counts: by mailing, attached to mailings, in as few queries as said."""

import pytest

from mailings.models import Mailing
from messages_app.selectors import attach_message_counts, message_counts_by_mailing
from messages_app.tests.factories import three_mailings_with_messages

pytestmark = pytest.mark.django_db


@pytest.fixture
def mailings_with_messages():
    return three_mailings_with_messages()


def test_attach_sets_every_status_and_the_total_in_one_query(
    mailings_with_messages, django_assert_num_queries
):
    mailings = list(Mailing.objects.all())

    with django_assert_num_queries(1):
        attached = attach_message_counts(mailings)

    assert attached == mailings
    assert {mailing.pk: mailing.message_counts for mailing in attached} == mailings_with_messages


def test_attach_counts_only_the_given_mailings(mailings_with_messages):
    mailing = Mailing.objects.get(text="some")

    (attached,) = attach_message_counts(Mailing.objects.filter(pk=mailing.pk))

    counts = attached.message_counts
    assert (counts["sent"], counts["failed"], counts["total"]) == (2, 1, 3)


def test_attach_leaves_the_mailings_in_a_querysets_cache(mailings_with_messages, django_assert_num_queries):
    mailings = Mailing.objects.all()
    attach_message_counts(mailings)

    with django_assert_num_queries(0):
        assert {mailing.pk: mailing.message_counts for mailing in mailings} == mailings_with_messages


def test_counts_by_mailing_give_zeros_to_mailings_without_messages(
    mailings_with_messages, django_assert_num_queries
):
    ids = list(mailings_with_messages)

    with django_assert_num_queries(1):
        counts = message_counts_by_mailing(ids)

    assert counts == mailings_with_messages


def test_counts_of_no_mailings_need_no_query(django_assert_num_queries):
    with django_assert_num_queries(0):
        assert message_counts_by_mailing([]) == {}
        assert attach_message_counts([]) == []


def test_one_mailings_counts(mailings_with_messages, django_assert_num_queries):
    mailing = Mailing.objects.get(text="every status")

    with django_assert_num_queries(1):
        counts = message_counts_by_mailing([mailing.pk])[mailing.pk]

    assert counts == mailings_with_messages[mailing.pk]
