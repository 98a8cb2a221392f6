"""Parses a /metrics body from stdin as a Prometheus client would.

argv[1] is "openmetrics" (prometheus_client's strict OpenMetrics parser: it
raises on anything the format forbids, a missing "# EOF" included) or "text"
(its 0.0.4 parser). Prints one line per sample: family, type, sample name,
labels (k=v,...), value, tab-separated. Run with Debian's python3 (python3-prometheus-client).
"""
import sys

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families as text_families

fmt, text = sys.argv[1], sys.stdin.read()
parse = openmetrics_families if fmt == "openmetrics" else text_families
for family in parse(text):
    for sample in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
        print(family.name, family.type, sample.name, labels or "-", sample.value, sep="\t")
