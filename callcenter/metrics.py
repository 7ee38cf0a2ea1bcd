"""The Prometheus metrics of one process (issue 16.1), served at ``GET /metrics`` (web/api_metrics.py).

Every metric the service exports is defined here, on a registry of its own per ``Metrics`` (one per
app: tests run several apps in one process, and the library's global registry would mix them).
Two kinds:

- events counted where they happen, in memory of this process: calls ended (``CountedCallLog``,
  the one call log every flow writes through), call set-up time (``lines``), end of speech to the
  draft saved (the hotline flow), call-outs ended and their first ring (the call-out runner),
  follow-up calls (the follow-up dialler). Prometheus sums them over the nodes.
- states read when Prometheus scrapes (``StateCollector``): the lines (up, calls under way,
  datagrams turned away), the recogniser, the scheduler's lease, and the tickets open and overdue,
  which come from the database every scrape, because several nodes share it.

Names as the issue lists them; ``prometheus_client`` adds ``_total`` to counters.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from callcenter.asr.capacity import StreamSlots
from callcenter.asr.stream import Recognizer
from core.calls import CallLog
from core.ticket_counts import OpenCount

log = logging.getLogger("callcenter.metrics")

# INVITE -> 200 OK: ours answers at once; an engineer or a resident takes up to the ring time.
SETUP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 45, 60)
SAVE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10)
FIRST_RING_BUCKETS = (0.5, 1, 2, 3, 5, 10, 30, 60, 120)


class Metrics:
    """The metrics of one app; each part of the service is handed this object (or keeps ``NO_METRICS``)."""

    def __init__(self, process: bool = True):
        self.registry = CollectorRegistry()
        if process:  # the client's own: CPU, memory, open files, Python's GC
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)
        r = self.registry
        self.calls = Counter("callcenter_calls", "Calls ended, by line, direction and outcome (core.calls.OUTCOMES)",
                             ["line", "direction", "outcome"], registry=r)
        self.call_setup = Histogram("callcenter_call_setup_seconds",
                                    "INVITE to 200 OK: received to answered (inbound), sent to answered (outbound)",
                                    ["direction"], buckets=SETUP_BUCKETS, registry=r)
        self.speech_to_saved = Histogram("callcenter_speech_to_saved_seconds",
                                         "The caller's end of speech to the draft ticket saved",
                                         buckets=SAVE_BUCKETS, registry=r)
        self.asr_streams = Gauge("callcenter_asr_streams_active", "Speech recognisers listening to a caller now",
                                 registry=r)
        self.callouts = Counter("callcenter_callouts", "Emergency call-outs ended here, by final state",
                                ["state"], registry=r)
        self.callout_first_ring = Histogram("callcenter_callout_first_ring_seconds",
                                            "A call-out's start to its first engineer's phone dialled",
                                            buckets=FIRST_RING_BUCKETS, registry=r)
        self.followups = Counter("callcenter_followups", "Follow-up calls made, by the follow-up's status after it",
                                 ["status"], registry=r)
        self.state = StateCollector()
        r.register(self.state)

    def counted_recognizers(self, factory: Callable[[list[str] | None], Recognizer] | None
                            ) -> Callable[[list[str] | None], Recognizer] | None:
        """The recogniser factory, each recogniser it makes counted as active until released."""
        if factory is None:
            return None

        def make(grammar: list[str] | None = None) -> Recognizer:
            recognizer = factory(grammar)
            self.asr_streams.inc()
            return CountedRecognizer(recognizer, self.asr_streams)
        return make



class StateCollector(Collector):
    """States read at scrape time; each source is set by the wiring (callcenter/app.py), or absent."""

    def __init__(self) -> None:
        self.lines: Callable[[], Iterable[Any]] = lambda: ()  # callcenter.ivr.lines.Line
        self.asr_model_loaded: Callable[[], bool] = lambda: False
        self.scheduler_owner: Callable[[], bool] = lambda: False
        self.stream_slots: StreamSlots | None = None  # asr.max_streams and how full (no speech model: none)
        self.open_tickets: Callable[[datetime], dict[str, OpenCount]] | None = None

    def collect(self):
        up = GaugeMetricFamily("callcenter_line_up", "1 if the line is registered (or listening, trunk), else 0",
                               labels=["line"])
        active = GaugeMetricFamily("callcenter_calls_active", "Calls under way on the line", labels=["line", "direction"])
        hostile = CounterMetricFamily("callcenter_hostile_packets", "SIP and RTP datagrams the line turned away",
                                      labels=["line"])
        for line in self.lines():
            up.add_metric([line.name], 1 if line.up else 0)
            directions = {"inbound": 0, "outbound": 0}
            for call in line.calls:
                directions[call.direction] = directions.get(call.direction, 0) + 1
            for direction, count in directions.items():
                active.add_metric([line.name, direction], count)
            hostile.add_metric([line.name], line.hostile_packets)
        yield from (up, active, hostile)
        yield GaugeMetricFamily("callcenter_asr_model_loaded", "1 if the speech model is loaded",
                                value=1 if self.asr_model_loaded() else 0)
        yield GaugeMetricFamily("callcenter_scheduler_owner", "1 if this node runs the scheduled jobs (holds the lease)",
                                value=1 if self.scheduler_owner() else 0)
        if self.stream_slots is not None:
            yield from self._slots(self.stream_slots)
        if self.open_tickets is not None:
            yield from self._tickets()

    @staticmethod
    def _slots(slots: StreamSlots):
        """How full the node's recognisers are (asr/capacity.py): a node that keeps refusing wants more nodes."""
        yield GaugeMetricFamily("callcenter_asr_slots", "Recogniser streams this node may run at once (asr.max_streams)",
                                value=slots.max_streams)
        yield GaugeMetricFamily("callcenter_asr_slots_in_use", "Recogniser streams held by calls, or kept for calls being set up",
                                value=slots.in_use)
        yield CounterMetricFamily("callcenter_asr_full_refused", "INVITEs refused (503) because every recogniser stream was taken",
                                  value=slots.refused)
        yield CounterMetricFamily("callcenter_asr_full_without_speech",
                                  "Calls answered on keys and a recording because every recogniser stream was taken",
                                  value=slots.without_speech)

    def _tickets(self):
        try:
            counts = self.open_tickets(datetime.now(UTC))
        except Exception:  # the database away: the scrape still answers, without these
            log.exception("metrics: cannot count the open tickets")
            return
        opened = GaugeMetricFamily("callcenter_tickets_open", "Tickets not completed, archived or cancelled",
                                   labels=["urgency"])
        overdue = GaugeMetricFamily("callcenter_tickets_overdue", "Open tickets past the deadline of their state",
                                    labels=["urgency"])
        for urgency, count in sorted(counts.items()):
            opened.add_metric([urgency], count.open)
            overdue.add_metric([urgency], count.overdue)
        yield from (opened, overdue)


class CountedRecognizer(Recognizer):
    """A recogniser counted in ``callcenter_asr_streams_active`` from its making to its release."""

    def __init__(self, inner: Recognizer, gauge: Gauge):
        self._inner, self._gauge = inner, gauge
        self._released = threading.Event()
        self.sample_rate = inner.sample_rate

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    def accept(self, pcm16: bytes):
        return self._inner.accept(pcm16)

    def finish(self):
        return self._inner.finish()

    def release(self) -> None:
        if not self._released.is_set():
            self._released.set()
            self._gauge.dec()
        self._inner.release()


class CountedCallLog(CallLog):
    """The node's call log, counting each call in ``callcenter_calls_total`` when its record closes
    (every call leaves one: answered, refused, rung out)."""

    def __init__(self, sessions, node: str, node_run_id: int | None, metrics: Metrics):
        super().__init__(sessions, node, node_run_id)
        self.metrics = metrics
        self._lock = threading.Lock()
        self._labels: dict[int, tuple[str, str]] = {}  # open records: their line and direction

    def open(self, **opened: Any) -> int:
        record_id = super().open(**opened)
        with self._lock:
            self._labels[record_id] = (opened.get("line") or "", opened.get("direction") or "")
        return record_id

    def close(self, call_id: int, outcome: str, at: datetime | None = None) -> None:
        try:
            super().close(call_id, outcome, at)
        finally:
            with self._lock:
                labels = self._labels.pop(call_id, None)
            if labels is not None:
                self.metrics.calls.labels(*labels, outcome).inc()


# What unwired parts (tests that build a line or a flow alone) count into: never served.
NO_METRICS = Metrics(process=False)
