"""Campaign-control figures: the audience count at 1,000,000 clients and a 25,000-row client import.

`python -m bench.campaign [--clients N] [--import-rows N]` creates a PostgreSQL database of its own
on BENCH_PG_URL, fills it, measures through the API in this process (DRF's test client: the view,
the serializers and the SQL, without HTTP), prints JSON and drops the database.
"""

import argparse
import json
import os
import statistics
import sys
import time

import psycopg

from .context import PG_ADMIN_URL

AUDIENCE_QUERIES = {
    "every client": {},
    "3 tags": {"filter_tags": "tag1,tag2,tag3"},
    "2 codes and 2 tags": {"filter_operator_codes": "901,902", "filter_tags": "tag1,tag7"},
    "1 code": {"filter_operator_code": "905"},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=1_000_000)
    parser.add_argument("--import-rows", type=int, default=25_000, help="half new phones, half updates")
    parser.add_argument("--requests", type=int, default=20, help="audience requests per query")
    args = parser.parse_args()
    name = f"mailing_campaign_bench_{os.getpid()}"
    with psycopg.connect(f"{PG_ADMIN_URL}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    os.environ.update(
        DATABASE_URL=f"{PG_ADMIN_URL}/{name}", DJANGO_SETTINGS_MODULE="mailing_service.settings"
    )
    try:
        print(json.dumps(measure(args), indent=2))
    finally:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(f"{PG_ADMIN_URL}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return 0


def measure(args) -> dict:
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from rest_framework.test import APIClient

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        # 20 operator codes, 50 tags, one client in ten untagged.
        cursor.execute(
            "INSERT INTO clients_client (phone, operator_code, tag, timezone, created_at, updated_at) "
            "SELECT '79' || lpad(n::text, 9, '0'), (900 + n %% 20)::text, "
            "CASE WHEN n %% 10 = 0 THEN '' ELSE 'tag' || (n %% 50) END, 'Europe/Moscow', now(), now() "
            "FROM generate_series(1, %s) AS n",
            [args.clients],
        )
        cursor.execute("VACUUM ANALYZE clients_client")  # as autovacuum would: index-only scans
    client = APIClient(SERVER_NAME="localhost")
    client.force_authenticate(get_user_model().objects.create_user("bench"))
    results = {"clients": args.clients, "audience_p50_ms": {}}
    for label, query in AUDIENCE_QUERIES.items():
        took = []
        for _ in range(args.requests):
            started = time.perf_counter()
            response = client.get("/api/v1/mailings/audience/", query)
            took.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.content
        results["audience_p50_ms"][label] = round(statistics.median(took), 1)
    half = args.import_rows // 2
    rows = ["phone,operator_code,tag,timezone"]
    rows += [f"79{n:09d},,imp,Asia/Tokyo" for n in range(1, half + 1)]  # existing: updates
    rows += [f"78{n:09d},,imp,Europe/Moscow" for n in range(1, args.import_rows - half + 1)]  # new
    started = time.perf_counter()
    response = client.generic(
        "POST", "/api/v1/clients/import/", "\n".join(rows) + "\n", content_type="text/csv"
    )
    took = time.perf_counter() - started
    assert response.status_code == 200, response.content
    results["import"] = {
        **{key: response.data[key] for key in ("created", "updated", "invalid_count")},
        "seconds": round(took, 1),
        "rows_per_second": round(args.import_rows / took),
    }
    return results


if __name__ == "__main__":
    sys.exit(main())
