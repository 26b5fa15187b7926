"""What the files in deploy/ ask of the bot's metrics: every metric name (and the labels it is
matched on) that the Grafana dashboard's queries and the Prometheus alert rules use.

PromQL is not parsed in full: label matchers, grouping clauses, ranges and strings are taken
out, and what is left that is not a function, a keyword or a number is a metric name. That is
enough for the queries in deploy/, and a query this misreads shows up as an unknown metric in
the tests, never as a silent pass.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana-dashboard.json"
ALERTS = DEPLOY / "prometheus-alerts.yml"
UNIT = DEPLOY / "gemini-tts-bot.service"
COMPOSE = ROOT / "compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"

#: Series Prometheus makes itself, not the bot (the scrape's own health).
PROMETHEUS_OWN = {"up"}
#: Labels Prometheus adds to every scraped series, and the histogram's bucket label.
ADDED_LABELS = {"job", "instance", "le"}

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SELECTOR = re.compile(rf"({_NAME})?\s*\{{([^}}]*)\}}")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_queries() -> list[str]:
    """Each panel's PromQL, and each template variable's `label_values(...)` metric."""
    board = dashboard()
    queries = [t["expr"] for p in panels(board) for t in p.get("targets", [])]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            found = re.fullmatch(r"label_values\((.+),\s*\w+\)", variable["definition"])
            assert found, variable["definition"]
            queries.append(found.group(1))
    return queries


def alert_rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def names_in(expr: str) -> dict[str, set[str]]:
    """Each metric `expr` reads, with the label names it matches that metric on."""
    expr = re.sub(r"\$\{?\w+\}?", "", expr)  # Grafana's variables ($__rate_interval, $job)
    found: dict[str, set[str]] = {}

    def selector(match: re.Match[str]) -> str:
        name = match.group(1)
        labels = set(_MATCHER.findall(match.group(2)))
        inner = dict(re.findall(r"(\w+)\s*=\s*\"([^\"]*)\"", match.group(2)))
        name = name or inner.get("__name__")
        assert name, f"a selector with no metric name in {expr!r}"
        found.setdefault(name, set()).update(labels - {"__name__"})
        return " "

    expr = _SELECTOR.sub(selector, expr)
    expr = _GROUPING.sub(" ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\"[^\"]*\"|'[^']*'", " ", expr)
    expr = re.sub(r"(?<![\w:])\d[\w.]*", " ", expr)  # numbers and durations (5m, 1e3)
    for match in re.finditer(rf"({_NAME})\s*(\()?", expr):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        found.setdefault(name, set())
    return found


def referenced() -> dict[str, set[str]]:
    """Every metric the dashboard and the alert rules name, with the labels they match on."""
    everything: dict[str, set[str]] = {}
    for expr in [*dashboard_queries(), *(rule["expr"] for rule in alert_rules())]:
        for name, labels in names_in(expr).items():
            everything.setdefault(name, set()).update(labels)
    return everything


def missing_from(samples: dict[str, set[str]]) -> list[str]:
    """What the deploy files name that a scrape (sample name -> its label names) lacks."""
    problems = []
    for name, labels in sorted(referenced().items()):
        if name in PROMETHEUS_OWN:
            continue
        if name not in samples:
            problems.append(f"{name} is not in the scrape")
        elif unknown := labels - ADDED_LABELS - samples[name]:
            problems.append(f"{name} has no label {sorted(unknown)}")
    return problems


def compose_services() -> dict[str, dict[str, Any]]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    services: dict[str, dict[str, Any]] = loaded["services"]
    return services


def started_by_up(profiles: set[str]) -> set[str]:
    """What `docker compose up` (no service named) starts with `profiles` active: Compose's
    rule is every service without `profiles`, and each with one of the active ones."""
    return {
        name
        for name, service in compose_services().items()
        if not service.get("profiles") or profiles & set(service["profiles"])
    }


def example_compose_profiles() -> set[str]:
    """The profiles `.env.example` (copied to .env, which Compose reads) makes active."""
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.startswith("COMPOSE_PROFILES="):
            return {p.strip() for p in line.split("=", 1)[1].split(",") if p.strip()}
    return set()
