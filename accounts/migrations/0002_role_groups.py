"""The groups operators, viewers and admins with their permissions (accounts.roles)."""

from django.db import migrations


def create_role_groups(apps, schema_editor):
    from accounts.roles import ensure_role_groups

    ensure_role_groups(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_token_expiry"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("authtoken", "0004_alter_tokenproxy_options"),
        ("clients", "0003_view_phone_permission"),
        ("mailings", "0001_initial"),
        ("messages_app", "0001_initial"),
    ]

    operations = [migrations.RunPython(create_role_groups, migrations.RunPython.noop)]
