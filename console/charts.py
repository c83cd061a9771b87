"""Pictures for the operator console, drawn on the server as inline SVG.

No chart library and no JavaScript: the admin pages work offline and the pictures come with the
HTML (and with the JSON that refreshes a running mailing's bar). Every shape carries a <title>, so
hovering over it shows its numbers.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from django.utils.html import escape, format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe


@dataclass(frozen=True)
class Series:
    key: str
    label: str
    colour: str


# The progress of a mailing's messages: final outcomes, then everything not final yet. "unknown"
# (the request reached the provider, its answer never came back) is final but neither sent nor failed;
# so is "opted_out" (the phone went on the opt-out list while the mailing ran). "sent" of a provider
# with receipts: accepted, its receipt not back (yet).
PROGRESS_SERIES = (
    Series("sent", "sent", "#2e7d32"),
    Series("delivered", "delivered", "#1b5e20"),
    Series("undelivered", "undelivered", "#ad1457"),
    Series("failed", "failed", "#c62828"),
    Series("expired", "expired", "#8d8d8d"),
    Series("unknown", "answer unknown", "#f9a825"),
    Series("opted_out", "opted out", "#6a1b9a"),
    Series("waiting", "waiting", "#90caf9"),
)
# Statuses of messages still to be sent; every other status is final.
WAITING_STATUSES = ("pending", "sending")


def progress_parts(counts: Mapping[str, int]) -> dict[str, int]:
    """A counts dict by message status (and "total") grouped as the progress bar shows it."""
    parts = {series.key: counts.get(series.key, 0) for series in PROGRESS_SERIES}
    return parts | {"waiting": sum(counts.get(status, 0) for status in WAITING_STATUSES)}


def percent_done(counts: Mapping[str, int]) -> int:
    """Share of the messages in a final status, rounded down so 100 means all of them."""
    total = counts.get("total", 0)
    if not total:
        return 0
    return 100 * (total - progress_parts(counts)["waiting"]) // total


def progress_bar(counts: Mapping[str, int], *, height: int = 14, label: str = "") -> SafeString:
    """A horizontal bar, as wide as its container, split by PROGRESS_SERIES in proportion."""
    parts = progress_parts(counts)
    total = sum(parts.values())
    summary = ", ".join(f"{series.label} {parts[series.key]}" for series in PROGRESS_SERIES)
    title = f"{label}{percent_done(counts)} % done of {total}: {summary}"
    rects, x = [], 0.0
    for series in PROGRESS_SERIES:
        if not total or not parts[series.key]:
            continue
        width = 100 * parts[series.key] / total
        rects.append(
            (f"{x:.3f}", f"{width:.3f}", height, series.colour, f"{series.label}: {parts[series.key]}")
        )
        x += width
    return format_html(
        '<svg class="progress-bar" role="img" aria-label="{}" viewBox="0 0 100 {}" '
        'preserveAspectRatio="none" width="100%" height="{}" data-percent="{}">'
        '<title>{}</title><rect x="0" y="0" width="100" height="{}" fill="#eceff1"/>{}</svg>',
        title,
        height,
        height,
        percent_done(counts),
        title,
        height,
        format_html_join(
            "",
            '<rect x="{}" y="0" width="{}" height="{}" fill="{}"><title>{}</title></rect>',
            rects,
        ),
    )


@dataclass(frozen=True)
class Bucket:
    label: str  # shown under the bar (every few bars) and in its tooltip
    values: Mapping[str, int]


def bar_chart(
    buckets: Sequence[Bucket],
    series: Sequence[Series],
    *,
    title: str,
    width: int = 1200,
    height: int = 200,
    label_every: int = 6,
) -> SafeString:
    """Stacked bars, one per bucket, with a scale on the left and a label under every few bars."""
    shapes = bar_chart_shapes(buckets, series, width=width, height=height, label_every=label_every)
    legend = format_html_join(
        " ",
        '<span class="legend"><span class="swatch" style="background:{}"></span>{}</span>',
        ((one.colour, one.label) for one in series),
    )
    svg = (
        f'<svg class="bar-chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}" '
        f'width="100%" style="max-width:{width}px" font-size="10" font-family="sans-serif">'
        f"<title>{escape(title)}</title>{''.join(shapes)}</svg>"
    )
    return format_html('<figure class="chart">{}<figcaption>{}</figcaption></figure>', mark_safe(svg), legend)


def bar_chart_shapes(
    buckets: Sequence[Bucket], series: Sequence[Series], *, width: int, height: int, label_every: int
) -> list[str]:
    """The SVG elements of `bar_chart` in a `width` × `height` box, for a picture of several charts."""
    left, bottom, top = 44, 20, 8
    plot_width, plot_height = width - left - 4, height - bottom - top
    peak = max((sum(bucket.values.get(s.key, 0) for s in series) for bucket in buckets), default=0)
    scale = plot_height / peak if peak else 0
    slot = plot_width / max(len(buckets), 1)
    shapes = [
        f'<line x1="{left}" y1="{top + plot_height}" x2="{width}" y2="{top + plot_height}" '
        'stroke="#90a4ae"/>',
        _text(left - 4, top + 10, str(peak), anchor="end"),
        _text(left - 4, top + plot_height, "0", anchor="end"),
    ]
    for index, bucket in enumerate(buckets):
        x = left + index * slot
        y = top + plot_height
        tooltip = f"{bucket.label}: " + ", ".join(f"{s.label} {bucket.values.get(s.key, 0)}" for s in series)
        bars = []
        for one in series:
            bar_height = bucket.values.get(one.key, 0) * scale
            if bar_height:
                y -= bar_height
                bars.append(
                    f'<rect x="{x + slot * 0.1:.2f}" y="{y:.2f}" width="{slot * 0.8:.2f}" '
                    f'height="{bar_height:.2f}" fill="{one.colour}"/>'
                )
        # A transparent column over the whole slot, so hovering anywhere above a bucket shows it.
        shapes.append(
            f'<g><title>{escape(tooltip)}</title>{"".join(bars)}<rect x="{x:.2f}" y="{top}" '
            f'width="{slot:.2f}" height="{plot_height}" fill="transparent"/></g>'
        )
        if index % label_every == 0:
            shapes.append(_text(x + slot / 2, height - 4, bucket.label, anchor="middle"))
    return shapes


def _text(x: float, y: float, text: str, *, anchor: str) -> str:
    return f'<text x="{x:.2f}" y="{y:.2f}" text-anchor="{anchor}" fill="#546e7a">{escape(text)}</text>'
