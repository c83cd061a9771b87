import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.roles import VIEWERS
from clients.tests.factories import ClientFactory
from clients.tests.test_admin_phones import staff_client
from mailings.tests.factories import MailingFactory
from messages_app.models import Message, MessageStatus
from messages_app.tests.factories import MessageFactory

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:messages_app_message_changelist")


def listed_ids(response) -> set[int]:
    return {message.pk for message in response.context["cl"].result_list}


def test_changelist_renders_messages_with_masked_client_phones(admin_client):
    message = MessageFactory(
        client=ClientFactory(phone="79161234567"), status=MessageStatus.FAILED, last_error="rejected"
    )

    response = admin_client.get(CHANGELIST)

    assert response.status_code == 200
    assert listed_ids(response) == {message.pk}
    content = response.content.decode()
    assert "7916*****67" in content
    assert "79161234567" not in content
    assert "rejected" in content


def test_changelist_query_count_does_not_grow_with_messages(admin_client, django_assert_max_num_queries):
    MessageFactory()
    admin_client.get(CHANGELIST)  # warm the session and content type caches
    with CaptureQueriesContext(connection) as one_message:
        admin_client.get(CHANGELIST)

    MessageFactory.create_batch(20)

    with django_assert_max_num_queries(len(one_message)):
        assert len(listed_ids(admin_client.get(CHANGELIST))) == 21


def test_change_view_shows_a_message_without_a_form_to_save(admin_client):
    message = MessageFactory(status=MessageStatus.SENT, attempts=2)

    response = admin_client.get(reverse("admin:messages_app_message_change", args=[message.pk]))

    assert response.status_code == 200
    assert not response.context["has_change_permission"]
    assert 'name="_save"' not in response.content.decode()


def test_posting_to_the_change_view_does_not_change_delivery_state(admin_client):
    message = MessageFactory(status=MessageStatus.PENDING)
    url = reverse("admin:messages_app_message_change", args=[message.pk])

    response = admin_client.post(url, {"status": MessageStatus.SENT, "attempts": 9})

    assert response.status_code == 403
    message.refresh_from_db()
    assert (message.status, message.attempts) == (MessageStatus.PENDING, 0)


def test_messages_cannot_be_added_or_deleted(admin_client):
    message = MessageFactory()

    assert admin_client.get(reverse("admin:messages_app_message_add")).status_code == 403
    delete_url = reverse("admin:messages_app_message_delete", args=[message.pk])
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 403
    assert Message.objects.filter(pk=message.pk).exists()


def test_the_mailing_link_lists_only_that_mailings_messages(admin_client):
    mailing = MailingFactory()
    wanted = MessageFactory.create_batch(2, mailing=mailing)
    MessageFactory()

    response = admin_client.get(CHANGELIST, {"mailing__id__exact": mailing.pk})

    assert listed_ids(response) == {message.pk for message in wanted}


def test_status_filter_lists_only_messages_in_that_status(admin_client):
    failed = MessageFactory(status=MessageStatus.FAILED)
    MessageFactory(status=MessageStatus.SENT)

    response = admin_client.get(CHANGELIST, {"status__exact": MessageStatus.FAILED})

    assert listed_ids(response) == {failed.pk}


def test_search_by_full_phone_finds_that_clients_messages(admin_client):
    wanted = MessageFactory(client=ClientFactory(phone="79161234567"))
    MessageFactory(client=ClientFactory(phone="79161234568"))

    response = admin_client.get(CHANGELIST, {"q": "79161234567"})

    assert listed_ids(response) == {wanted.pk}


def test_messages_of_a_deleted_client_still_render(admin_client):
    message = MessageFactory()
    message.client.delete()

    assert listed_ids(admin_client.get(CHANGELIST)) == {message.pk}
    change_url = reverse("admin:messages_app_message_change", args=[message.pk])
    assert admin_client.get(change_url).status_code == 200


def test_a_viewer_cannot_find_messages_by_phone(client, django_user_model):
    viewer = staff_client(client, django_user_model, VIEWERS)
    MessageFactory(client=ClientFactory(phone="79260000001"))
    MessageFactory(client=ClientFactory(phone="79260000002"))

    response = viewer.get(reverse("admin:messages_app_message_changelist"), {"q": "79260000001"})

    assert response.status_code == 200
    assert not response.context["cl"].search_fields
    assert response.context["cl"].result_count == 2  # the list, not narrowed by the phone


def test_a_messages_page_shows_its_recipient_in_clear_only_to_those_who_may_see_phones(
    client, viewer, operator
):
    message = MessageFactory(client=ClientFactory(phone="79161234567"))
    message.client.delete()  # the message keeps its recipient
    page = reverse("admin:messages_app_message_change", args=[message.pk])
    pages = {}
    for user in (viewer, operator):
        user.is_staff = True
        user.save()
        client.force_login(user)
        pages[user.username] = client.get(page).content.decode()

    assert "7916*****67" in pages["viewer"] and "79161234567" not in pages["viewer"]
    assert "79161234567" in pages["operator"]
