"""Scrape a real ``/metrics`` endpoint and read its samples; the Grafana dashboard's metric names."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "spendgate.json"
METRIC_NAME = re.compile(r"\bspendgate_[a-z_]+\b")


@dataclass(frozen=True)
class Scrape:
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]
    families: set[str]

    def value(self, name: str, **labels: str) -> float:
        """The sample ``name`` with exactly ``labels`` (KeyError when absent)."""
        return self.samples[(name, tuple(sorted(labels.items())))]

    def total(self, name: str, **labels: str) -> float:
        """The sum of the samples ``name`` whose labels include ``labels`` (0 when none)."""
        return sum(v for (n, ls), v in self.samples.items()
                   if n == name and set(labels.items()) <= set(ls))

    def labelled(self, name: str, label: str) -> set[str]:
        return {dict(ls)[label] for (n, ls), _ in self.samples.items() if n == name and label in dict(ls)}

    @property
    def sample_names(self) -> set[str]:
        return {n for n, _ in self.samples}


async def scrape(url: str, token: str | None) -> Scrape:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as response:
        assert response.status == 200, await response.text()
        text = await response.text()
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    families = set()
    for family in text_string_to_metric_families(text):
        families.add(family.name)
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return Scrape(samples, families)


def dashboard_metric_names() -> dict[str, set[str]]:
    """Metric names each panel's expressions use, by panel title."""
    dashboard = json.loads(DASHBOARD.read_text())
    return {panel["title"]: {name for target in panel["targets"] for name in METRIC_NAME.findall(target["expr"])}
            for panel in dashboard["panels"]}
