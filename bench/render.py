"""What personal fields cost at N messages, rendered at send time (as the sender does) or stored.

`python -m bench.render [--messages N]` times, in this process, N renders of a two-placeholder
text (`mailings.placeholders`, one client's attributes each, as the claim hands them over) and the
decoding of N clients' attributes from JSON (what the claim's extra column costs the driver), then
asks PostgreSQL on BENCH_PG_URL what storing each rendered text in the message row would take
(`pg_column_size` of the texts, Latin and Cyrillic). Prints JSON.
"""

import argparse
import json
import time

import psycopg

from mailings.placeholders import parse

from .context import PG_ADMIN_URL

TEXT = "Hello, {name|customer}! New offers in your {city|nearest} store until Sunday."
NAMES = {
    "latin": ["Anna", "Maximilian", "John", "Olga"],
    "cyrillic": ["Анна", "Максимилиан", "Иван", "Ольга"],
}
CITIES = {
    "latin": ["Kazan", "Moscow", "Saint Petersburg"],
    "cyrillic": ["Казань", "Москва", "Санкт-Петербург"],
}
DISTINCT_CLIENTS = 1000  # attribute sets cycled through: N dicts would measure the allocator


def attribute_sets(alphabet: str) -> list[dict[str, str]]:
    names, cities = NAMES[alphabet], CITIES[alphabet]
    return [
        {"name": names[n % len(names)], "city": cities[n % len(cities)]} if n % 10 else {}
        for n in range(DISTINCT_CLIENTS)
    ]


def seconds_for(messages: int, function, inputs: list) -> float:
    started = time.perf_counter()
    for n in range(messages):
        function(inputs[n % len(inputs)])
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    args = parser.parse_args()
    template = parse(TEXT)
    results: dict = {"messages": args.messages, "text": TEXT}
    for alphabet in NAMES:
        attributes = attribute_sets(alphabet)
        encoded = [json.dumps(item) for item in attributes]
        rendered = [template.render(item) for item in attributes]
        with psycopg.connect(f"{PG_ADMIN_URL}/postgres") as connection:
            (bytes_per_text,) = connection.execute(
                "SELECT avg(pg_column_size(text)) FROM unnest(%s::text[]) AS text", [rendered]
            ).fetchone()
        results[alphabet] = {
            "render_s": round(seconds_for(args.messages, template.render, attributes), 2),
            "json_decode_s": round(seconds_for(args.messages, json.loads, encoded), 2),
            "stored_text_bytes_per_message": round(float(bytes_per_text), 1),
            "stored_text_mb": round(float(bytes_per_text) * args.messages / 1e6, 1),
        }
    print(json.dumps(results, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
