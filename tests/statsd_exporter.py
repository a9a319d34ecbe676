"""A stand-in for Prometheus's statsd_exporter in the tests: StatsD over UDP in, Prometheus text out.

The exporter is a Go program that no package registry this project installs from ships
(Debian has Prometheus, Alertmanager and the Pushgateway, not it), so compose and the Helm
chart run the real one, and the tests run this: the project's mapping file
(``docker/statsd/mapping.yml``) applied the way the exporter applies it, for the features that
file uses: glob rules (a ``*`` is one dot-separated part) and regex rules, first match wins,
``$n`` in label values, ``action: drop``; counters add up (``@rate`` scaled), gauges are set or
moved (``+n``/``-n``), timers in milliseconds are observed in seconds into the rule's histogram
buckets. Anything else in a mapping file is refused, so the file cannot outgrow what is tested.
"""

from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

RULE_KEYS = {"match", "match_type", "name", "labels", "action", "observer_type", "histogram_options"}
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class Rule:
    pattern: re.Pattern
    name: str
    labels: dict[str, str]
    drop: bool
    buckets: tuple[float, ...]

    @classmethod
    def from_mapping(cls, mapping: dict[str, Any]) -> Rule:
        unknown = set(mapping) - RULE_KEYS
        if unknown:
            raise ValueError(f"the stand-in does not know the mapping keys {sorted(unknown)}: {mapping}")
        match = mapping["match"]
        if mapping.get("match_type", "glob") == "regex":
            pattern = re.compile(match)
        else:
            pattern = re.compile(
                "^" + r"\.".join("([^.]+)" if p == "*" else re.escape(p) for p in match.split(".")) + "$"
            )
        if mapping.get("observer_type", "histogram") != "histogram":
            raise ValueError(f"the stand-in observes timers as histograms only: {mapping}")
        buckets = tuple(mapping.get("histogram_options", {}).get("buckets", DEFAULT_BUCKETS))
        labels = {str(k): str(v) for k, v in (mapping.get("labels") or {}).items()}
        return cls(pattern, mapping["name"], labels, mapping.get("action") == "drop", buckets)


@dataclass
class Series:
    kind: str  # counter, gauge, histogram
    buckets: tuple[float, ...] = ()
    values: dict[tuple[tuple[str, str], ...], Any] = field(default_factory=dict)


class StatsdExporter(Collector):
    """Listens for StatsD on a UDP port of 127.0.0.1 and serves ``/metrics`` on a TCP port of it."""

    def __init__(self, mapping_file: Path):
        self.rules = [Rule.from_mapping(m) for m in yaml.safe_load(mapping_file.read_text())["mappings"]]
        self.series: dict[str, Series] = {}
        self.lines: list[str] = []  # every line received, for a test's message
        self.unmatched: list[str] = []
        self._lock = threading.Lock()
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._udp.bind(("127.0.0.1", 0))
        self._udp.settimeout(0.2)
        self.statsd_port = self._udp.getsockname()[1]
        self._stop = threading.Event()
        self._listener = threading.Thread(target=self._listen, daemon=True)
        self.registry = CollectorRegistry()
        self.registry.register(self)
        self._server = None
        self.metrics_port = 0

    def start(self) -> StatsdExporter:
        from prometheus_client import start_http_server

        self._listener.start()
        self._server, _ = start_http_server(0, addr="127.0.0.1", registry=self.registry)
        self.metrics_port = self._server.server_port
        return self

    def stop(self) -> None:
        self._stop.set()
        self._listener.join(timeout=5)
        self._udp.close()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                packet = self._udp.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            for line in packet.decode().splitlines():
                if line.strip():
                    self.receive(line.strip())

    def receive(self, line: str) -> None:
        """One StatsD line: ``name:value|type[|@rate]``."""
        name, _, rest = line.partition(":")
        value_text, kind, *extra = rest.split("|")
        rate = next((float(e[1:]) for e in extra if e.startswith("@")), 1.0)
        with self._lock:
            self.lines.append(line)
            rule, groups = self._rule(name)
            if rule is None:
                self.unmatched.append(line)
                return
            if rule.drop:
                return
            labels = tuple(
                sorted((k, re.sub(r"\$(\d+)", lambda m: groups[int(m[1]) - 1], v)) for k, v in rule.labels.items())
            )
            if kind == "c":
                series = self._series(rule, "counter")
                series.values[labels] = series.values.get(labels, 0.0) + float(value_text) / rate
            elif kind == "g":
                series = self._series(rule, "gauge")
                relative = value_text[:1] in "+-"
                base = series.values.get(labels, 0.0) if relative else 0.0
                series.values[labels] = base + float(value_text)
            elif kind in ("ms", "h", "d"):
                series = self._series(rule, "histogram")
                seconds = float(value_text) / 1000.0 if kind == "ms" else float(value_text)
                counts, total, count = series.values.get(labels, ([0] * len(rule.buckets), 0.0, 0))
                counts = [c + (seconds <= bound) for c, bound in zip(counts, rule.buckets, strict=True)]
                series.values[labels] = (counts, total + seconds, count + 1)
            else:
                raise ValueError(f"a StatsD type the stand-in does not know: {line}")

    def _rule(self, name: str) -> tuple[Rule | None, tuple[str, ...]]:
        for rule in self.rules:
            match = rule.pattern.search(name)
            if match:
                return rule, match.groups()
        return None, ()

    def _series(self, rule: Rule, kind: str) -> Series:
        series = self.series.setdefault(rule.name, Series(kind, rule.buckets))
        if series.kind != kind:
            raise ValueError(f"{rule.name} is a {series.kind} and a {kind}: the exporter refuses that too")
        return series

    def collect(self):
        with self._lock:
            for name, series in self.series.items():
                labelnames = sorted({k for labels in series.values for k, _ in labels})
                if series.kind == "counter":
                    family = CounterMetricFamily(name, "from Airflow's StatsD", labels=labelnames)
                    for labels, value in series.values.items():
                        family.add_metric([v for _, v in labels], value)
                elif series.kind == "gauge":
                    family = GaugeMetricFamily(name, "from Airflow's StatsD", labels=labelnames)
                    for labels, value in series.values.items():
                        family.add_metric([v for _, v in labels], value)
                else:
                    family = HistogramMetricFamily(name, "from Airflow's StatsD", labels=labelnames)
                    for labels, (counts, total, count) in series.values.items():
                        buckets = [(f"{bound:g}", c) for bound, c in zip(series.buckets, counts, strict=True)]
                        family.add_metric([v for _, v in labels], [*buckets, ("+Inf", count)], total)
                yield family
