"""Message counts kept by triggers (MessageTally): every INSERT, UPDATE and DELETE of messages
appends the (mailing, status) changes it made, in its own transaction, whichever code ran it (the
fan-out's INSERT ... SELECT, claims, results, the sweeper, a cascade); a TRUNCATE empties them.

PostgreSQL: statement triggers with transition tables, one tally row per (mailing, status) a
statement changed, so a claim of 500 messages appends two rows, not a thousand. SQLite has row
triggers only: one row per message changed, which the embedded defaults' sizes afford.

Creating the triggers locks the message table against writes only until this short migration
commits; the messages already there are counted by the next one (0007), without a lock.
"""

from django.db import migrations, models

POSTGRESQL_FUNCTION = """
CREATE FUNCTION messages_app_message_tally() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO messages_app_messagetally (mailing_id, status, messages)
        SELECT mailing_id, status, count(*) FROM new_rows GROUP BY mailing_id, status;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO messages_app_messagetally (mailing_id, status, messages)
        SELECT mailing_id, status, -count(*) FROM old_rows GROUP BY mailing_id, status;
    ELSE
        -- An UPDATE that left the status alone nets to zero and appends nothing.
        INSERT INTO messages_app_messagetally (mailing_id, status, messages)
        SELECT mailing_id, status, sum(change) FROM (
            SELECT mailing_id, status, 1 AS change FROM new_rows
            UNION ALL
            SELECT mailing_id, status, -1 FROM old_rows
        ) AS changes
        GROUP BY mailing_id, status
        HAVING sum(change) <> 0;
    END IF;
    RETURN NULL;
END
$$;
"""
POSTGRESQL_TRUNCATE_FUNCTION = """
CREATE FUNCTION messages_app_message_tally_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM messages_app_messagetally;
    RETURN NULL;
END
$$;
"""
# A trigger with transition tables takes one event only, hence three.
POSTGRESQL_TRIGGERS = [
    f"""CREATE TRIGGER messages_app_message_tally_{event.lower()} AFTER {event} ON messages_app_message
    REFERENCING {tables} FOR EACH STATEMENT EXECUTE FUNCTION messages_app_message_tally()"""
    for event, tables in (
        ("INSERT", "NEW TABLE AS new_rows"),
        ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
        ("DELETE", "OLD TABLE AS old_rows"),
    )
] + [
    """CREATE TRIGGER messages_app_message_tally_truncate AFTER TRUNCATE ON messages_app_message
    FOR EACH STATEMENT EXECUTE FUNCTION messages_app_message_tally_truncate()"""
]
SQLITE_TRIGGERS = [
    """CREATE TRIGGER messages_app_message_tally_insert AFTER INSERT ON messages_app_message
    BEGIN
        INSERT INTO messages_app_messagetally (mailing_id, status, messages)
        VALUES (NEW.mailing_id, NEW.status, 1);
    END""",
    """CREATE TRIGGER messages_app_message_tally_update AFTER UPDATE OF mailing_id, status ON messages_app_message
    WHEN OLD.status IS NOT NEW.status OR OLD.mailing_id IS NOT NEW.mailing_id
    BEGIN
        INSERT INTO messages_app_messagetally (mailing_id, status, messages)
        VALUES (OLD.mailing_id, OLD.status, -1), (NEW.mailing_id, NEW.status, 1);
    END""",
    """CREATE TRIGGER messages_app_message_tally_delete AFTER DELETE ON messages_app_message
    BEGIN
        INSERT INTO messages_app_messagetally (mailing_id, status, messages)
        VALUES (OLD.mailing_id, OLD.status, -1);
    END""",
]


def create_triggers(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        statements = [POSTGRESQL_FUNCTION, POSTGRESQL_TRUNCATE_FUNCTION, *POSTGRESQL_TRIGGERS]
    else:
        statements = SQLITE_TRIGGERS
    for statement in statements:
        schema_editor.execute(statement)


def drop_triggers(apps, schema_editor):
    postgresql = schema_editor.connection.vendor == "postgresql"
    on_table = " ON messages_app_message" if postgresql else ""
    for event in ("insert", "update", "delete", "truncate"):
        schema_editor.execute(f"DROP TRIGGER IF EXISTS messages_app_message_tally_{event}{on_table}")
    if postgresql:
        schema_editor.execute("DROP FUNCTION IF EXISTS messages_app_message_tally()")
        schema_editor.execute("DROP FUNCTION IF EXISTS messages_app_message_tally_truncate()")


def recreate_sqlite_triggers(apps, schema_editor):
    """For a later migration that alters the message table: SQLite adds or alters a column by
    rebuilding the table, which drops its triggers, so they are made again. PostgreSQL alters the
    table in place and keeps them."""
    if schema_editor.connection.vendor == "sqlite":
        drop_triggers(apps, schema_editor)
        create_triggers(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("messages_app", "0005_mailing_fk_without_own_index"),
    ]

    operations = [
        migrations.CreateModel(
            name="MessageTally",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("mailing_id", models.BigIntegerField()),
                ("status", models.CharField(max_length=16)),
                ("messages", models.BigIntegerField()),
            ],
            options={
                "indexes": [models.Index(fields=["mailing_id", "status"], name="message_tally_mailing_idx")],
            },
        ),
        migrations.RunPython(create_triggers, drop_triggers),
    ]
