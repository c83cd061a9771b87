"""The latency phase's figures and picture: what one send at one provider latency looked like over time."""

from dataclasses import dataclass

from console.charts import Bucket, Series, bar_chart_shapes

RATE = Series("rate", "msg/s", "#2e7d32")
IN_FLIGHT = Series("in_flight", "requests in flight (provider)", "#1565c0")
PANEL_WIDTH, PANEL_HEIGHT, TITLE_HEIGHT = 900, 110, 18


@dataclass
class Timeline:
    """One send, second by second from its mailing's creation."""

    latency: float  # the provider's mean, seconds
    accepted: list[int]  # acceptances in each second
    in_flight: list[int]  # the most requests in flight seen in each second

    @classmethod
    def of(
        cls, *, latency: float, created: float, accepted_at: list[float], in_flight: list[tuple[float, int]]
    ):
        seconds = int(max([*accepted_at, *(at for at, _ in in_flight)], default=created) - created) + 1
        accepted, peaks = [0] * seconds, [0] * seconds
        for at in accepted_at:
            accepted[int(at - created)] += 1
        for at, count in in_flight:
            if at >= created:
                peaks[int(at - created)] = max(peaks[int(at - created)], count)
        return cls(latency, accepted, peaks)

    def rates(self) -> list[float]:
        """msg/s over the round trip (at least a second) ending with each second."""
        span = max(1, round(self.latency))
        return [
            sum(self.accepted[max(0, end - span) : end]) / span for end in range(1, len(self.accepted) + 1)
        ]

    def peak_rate(self) -> float:
        return max(self.rates(), default=0.0)

    def seconds_to(self, rate: float) -> float | None:
        """Seconds from the mailing's creation until the rate over a round trip first reached `rate`."""
        return next((second + 1.0 for second, seen in enumerate(self.rates()) if seen >= rate), None)


def sweep_svg(timelines: list[Timeline]) -> str:
    """For each latency, msg/s and requests in flight against seconds since the mailing was created,
    one panel each, drawn by the console's bar charts."""
    panels, y = [], 0
    longest = max(len(timeline.accepted) for timeline in timelines)
    for timeline in timelines:
        for series, values in ((RATE, timeline.accepted), (IN_FLIGHT, timeline.in_flight)):
            buckets = [Bucket(f"{second} s", {series.key: value}) for second, value in enumerate(values)]
            buckets += [Bucket("", {})] * (longest - len(buckets))  # one time scale for every panel
            title = f"{timeline.latency * 1000:,.0f} ms ±50 %: {series.label}, by second since creation"
            shapes = bar_chart_shapes(
                buckets, [series], width=PANEL_WIDTH, height=PANEL_HEIGHT, label_every=max(1, longest // 15)
            )
            panels.append(
                f'<g transform="translate(0,{y})"><text x="44" y="13" fill="#263238">{title}</text>'
                f'<g transform="translate(0,{TITLE_HEIGHT})">{"".join(shapes)}</g></g>'
            )
            y += TITLE_HEIGHT + PANEL_HEIGHT
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {PANEL_WIDTH} {y}" width="{PANEL_WIDTH}" '
        f'height="{y}" font-size="10" font-family="sans-serif">'
        '<rect width="100%" height="100%" fill="white"/>'
        f"{''.join(panels)}</svg>\n"
    )
