"""Reading a /metrics endpoint as Prometheus does, and the metric names a rule or panel uses."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from dataclasses import dataclass

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from tests.support import ROOT

OBSERVABILITY = ROOT / "deploy" / "observability"
ALERTS = OBSERVABILITY / "alerts.yml"
PROMETHEUS_CONFIG = OBSERVABILITY / "prometheus.yml"
DASHBOARD = OBSERVABILITY / "grafana" / "dashboards" / "mam-gateway.json"

# A sample's name beyond its family's: a histogram's series, a counter's _total.
_SERIES_SUFFIX = re.compile(r"_(bucket|sum|count|total)$")
_NAME = re.compile(r"\bmam_[a-z0-9_]+")


@dataclass
class Scrape:
    families: dict[str, Metric]
    text: str

    def value(self, sample: str, **labels: str) -> float:
        """The value of the one sample of that name whose labels include `labels` (0 when no
        such sample exists: a labelled counter not incremented yet)."""
        family = self.families.get(_SERIES_SUFFIX.sub("", sample))
        found = [
            s.value
            for s in (family.samples if family is not None else ())
            if s.name == sample and labels.items() <= s.labels.items()
        ]
        assert len(found) <= 1, f"{sample} {labels}: {len(found)} samples"
        return found[0] if found else 0.0

    def total(self, sample: str, **labels: str) -> float:
        """The sum of the samples of that name whose labels include `labels`."""
        family = self.families.get(_SERIES_SUFFIX.sub("", sample))
        return sum(
            s.value
            for s in (family.samples if family is not None else ())
            if s.name == sample and labels.items() <= s.labels.items()
        )


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


async def scrape(port: int, host: str = "127.0.0.1") -> Scrape:
    """GET /metrics (from a thread: the endpoint may run on this test's event loop)."""
    status, _, body = await asyncio.to_thread(get, f"http://{host}:{port}/metrics")
    assert status == 200, body
    text = body.decode()
    return Scrape({f.name: f for f in text_string_to_metric_families(text)}, text)


def family_names(text: str) -> set[str]:
    """The metric families `text` names (a histogram's or counter's series by its family)."""
    return {_SERIES_SUFFIX.sub("", name) for name in _NAME.findall(text)}


def alert_expressions() -> dict[str, str]:
    """Each alert's expression, by its name (the file's two forms: `expr: ...` on one line, or
    `expr: >` and the lines indented under it)."""
    found: dict[str, str] = {}
    alert = ""
    lines = ALERTS.read_text().splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("- alert:"):
            alert = stripped.split(":", 1)[1].strip()
        elif stripped.startswith("expr:"):
            value = stripped.split(":", 1)[1].strip()
            if value == ">":
                indent = len(line) - len(line.lstrip())
                body = []
                for following in lines[i + 1 :]:
                    if following.strip() and len(following) - len(following.lstrip()) <= indent:
                        break
                    body.append(following.strip())
                value = " ".join(part for part in body if part)
            found[alert] = value
    return found


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", ())
        if "expr" in target
    ]
    expressions += [v["definition"] for v in dashboard["templating"]["list"]]
    return expressions


def as_query(expression: str) -> str:
    """A dashboard expression with Grafana's variables given values Prometheus can run."""
    return (
        expression.replace("$__rate_interval", "1m")
        .replace("$__range", "5m")
        .replace('"$instance"', '".*"')
        .replace('"$worker"', '".*"')
    )


def used_metric_names() -> set[str]:
    """Every metric family the alert rules and the dashboard use."""
    text = "\n".join([*alert_expressions().values(), *dashboard_expressions()])
    return family_names(text)
