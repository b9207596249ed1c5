"""The server's Prometheus metrics: lookups by hit or miss, live predictions and request latency.

They are prometheus_client counters and a histogram in a registry of the app's own, not the
client's global one, so that several apps in one process (the tests start many) count apart. The
body is prometheus_client's text exposition; it is served as text format 0.0.4, the version this
server always declared and every Prometheus scrapes, rather than as `CONTENT_TYPE_LATEST`, which
says 0.0.4 or 1.0.0 depending on the client's release (metric names like ours read the same in
both)."""

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Upper bounds (seconds) of the request latency histogram."""
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The media type of the text /metrics answers with."""


class Metrics:
    """One app's counters and latency histogram, and their text for /metrics."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self._lookups = Counter("tuneforge_lookups_total", "Inputs looked up, by whether the store had them.",
                                ["result"], registry=self.registry)
        self._live = Counter("tuneforge_live_predictions_total", "Misses predicted by the live model.",
                             registry=self.registry)
        self._seconds = Histogram("tuneforge_request_seconds", "Time to answer an HTTP request.", buckets=BUCKETS,
                                  registry=self.registry)
        for result in ("hit", "miss"):  # both series from the start, at 0
            self._lookups.labels(result)

    def count_lookups(self, hits: int, misses: int) -> None:
        self._lookups.labels("hit").inc(hits)
        self._lookups.labels("miss").inc(misses)

    def count_live(self, predictions: int) -> None:
        self._live.inc(predictions)

    def observe(self, seconds: float) -> None:
        """Count one request that took `seconds` to answer."""
        self._seconds.observe(seconds)

    @property
    def live(self) -> int:
        """Misses the live model has predicted so far."""
        return int(self.registry.get_sample_value("tuneforge_live_predictions_total"))

    def render(self) -> bytes:
        return generate_latest(self.registry)
