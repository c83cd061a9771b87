import re

from console import charts


def rect_widths(svg: str) -> dict[str, float]:
    """The width of each coloured part of a progress bar, by the label in its tooltip."""
    return {
        label: float(width)
        for width, label in re.findall(r'<rect x="[\d.]+" y="0" width="([\d.]+)"[^>]*><title>([\w ]+):', svg)
    }


def test_progress_bar_splits_its_width_in_proportion_with_numbers_on_hover():
    counts = {"pending": 1, "sending": 1, "sent": 5, "failed": 2, "expired": 1, "total": 10}

    svg = str(charts.progress_bar(counts))

    assert rect_widths(svg) == {"sent": 50.0, "failed": 20.0, "expired": 10.0, "waiting": 20.0}
    assert "<title>waiting: 2</title>" in svg
    assert 'data-percent="80"' in svg
    assert (
        "80 % done of 10: sent 5, delivered 0, undelivered 0, failed 2, expired 1, answer unknown 0, "
        "opted out 0, waiting 2" in svg
    )


def test_progress_bar_shows_answers_unknown_as_final_but_apart():
    counts = {"sent": 6, "unknown": 2, "pending": 2, "total": 10}

    svg = str(charts.progress_bar(counts))

    assert rect_widths(svg) == {"sent": 60.0, "answer unknown": 20.0, "waiting": 20.0}
    assert "<title>answer unknown: 2</title>" in svg
    assert charts.percent_done(counts) == 80


def test_progress_bar_of_a_mailing_without_messages_is_empty_and_zero():
    svg = str(charts.progress_bar({"total": 0}))

    assert rect_widths(svg) == {}
    assert 'data-percent="0"' in svg


def test_percent_done_reaches_100_only_when_every_message_is_final():
    assert charts.percent_done({"sent": 999, "pending": 1, "total": 1000}) == 99
    assert charts.percent_done({"sent": 990, "failed": 10, "total": 1000}) == 100


def test_bar_chart_stacks_series_scaled_to_the_peak_with_tooltips():
    buckets = [charts.Bucket("10:00", {"sent": 30, "failed": 10}), charts.Bucket("11:00", {"sent": 10})]
    series = [series for series in charts.PROGRESS_SERIES if series.key in ("sent", "failed")]

    html = str(charts.bar_chart(buckets, series, title="Per hour", width=200, height=120, label_every=1))

    plot_height = 120 - 20 - 8
    heights = [
        float(h)
        for h in re.findall(r'<rect x="[\d.]+" y="[\d.]+" width="[\d.]+" height="([\d.]+)" fill="#', html)
    ]
    assert heights == [plot_height * 30 / 40, plot_height * 10 / 40, plot_height * 10 / 40]
    assert "<title>10:00: sent 30, failed 10</title>" in html
    assert ">40</text>" in html  # the scale's top
    assert ">11:00</text>" in html


def test_chart_text_is_escaped():
    html = str(charts.bar_chart([charts.Bucket("<b>", {"sent": 1})], charts.PROGRESS_SERIES[:1], title="<x>"))

    assert "<b>" not in html and "&lt;b&gt;" in html
    assert "<x>" not in html
