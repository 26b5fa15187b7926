"""What deploy/ ships for running the bot as a service and watching it: the systemd unit,
checked by systemd's own `systemd-analyze`; the Prometheus alert rules, checked and their
conditions evaluated by `promtool`; the Grafana dashboard's shape. That every metric they
name exists is proven against a real scrape in tests/test_metrics.py and tests/e2e.

`systemd-analyze` and `promtool` only read files here: nothing is started. Each check skips
where its tool is absent, except `systemd-analyze` where REQUIRE_SYSTEMD_ANALYZE or CI is set
(scripts/test.sh installs it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy_files import (
    ALERTS,
    ROOT,
    UNIT,
    alert_rules,
    compose_services,
    dashboard,
    example_compose_profiles,
    panels,
    started_by_up,
)

INSTALLED = "/opt/gemini-tts-bot/.venv/bin/gemini-tts-bot"
DATA = "/var/lib/gemini-tts-bot"
SERIES = '{job="gemini-tts-bot", instance="bot:9108"}'


def unit_options() -> dict[str, list[str]]:
    """Each `Key=value` of the unit, every value a key was given, in order."""
    options: dict[str, list[str]] = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            options.setdefault(key.strip(), []).append(value.strip())
    return options


def tool(name: str, required_by: str | None = None) -> str:
    found = shutil.which(name)
    if found is None:
        required = required_by is not None and any(
            os.environ.get(var, "").strip().lower() in {"1", "true", "yes"}
            for var in ("CI", required_by)
        )
        if required:
            pytest.fail(f"{name} is not installed ({required_by} or CI is set)", pytrace=False)
        pytest.skip(f"{name} is not installed")
    return found


# -- the systemd unit ------------------------------------------------------------------------


def test_the_unit_restarts_on_failure_as_its_own_user_writing_only_its_data() -> None:
    options = unit_options()
    assert options["Restart"] == ["on-failure"]
    assert options["User"] == ["gemini-tts-bot"]
    assert options["ExecStart"] == [f"{INSTALLED} run"]
    assert options["StateDirectory"] == ["gemini-tts-bot"]
    assert options["ReadWritePaths"] == [DATA]
    assert f"DATA_DIR={DATA}" in options["Environment"][0].split()
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert options[key] == [value], key
    # The network is the bot's whole job: nothing may take it away.
    assert "PrivateNetwork" not in options
    assert "AF_INET" in options["RestrictAddressFamilies"][0].split()
    # SIGTERM's graceful shutdown fits in before systemd kills the bot.
    assert float(options["TimeoutStopSec"][0]) > 8


def installable_copy(tmp_path: Path) -> Path:
    """The unit with its ExecStart pointing at this checkout's installed command, so
    `systemd-analyze` (which checks that the binary exists) judges the rest of it."""
    command = ROOT / ".venv" / "bin" / "gemini-tts-bot"
    if not command.exists():
        pytest.skip("the project is not installed in .venv")
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace(INSTALLED, str(command)), encoding="utf-8")
    return copy


def test_systemd_analyze_verifies_the_unit_without_a_warning(tmp_path: Path) -> None:
    analyze = tool("systemd-analyze", "REQUIRE_SYSTEMD_ANALYZE")
    done = subprocess.run(
        [analyze, "verify", "--man=no", "--generators=no", str(installable_copy(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    # A misspelt key or a bad value is only a warning to systemd: it must not be one here.
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_the_units_exposure_stays_low(tmp_path: Path) -> None:
    """`systemd-analyze security` rates the hardening offline; dropping options shows here."""
    analyze = tool("systemd-analyze", "REQUIRE_SYSTEMD_ANALYZE")
    unit = installable_copy(tmp_path)
    done = subprocess.run(
        [analyze, "security", "--offline=true", "--threshold=20", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    if "--offline" in done.stderr and "unrecognized" in done.stderr:
        pytest.skip("this systemd-analyze cannot rate a unit file offline (before v250)")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr


# -- the alert rules ---------------------------------------------------------------------------


def test_every_alert_says_how_bad_and_what_happened() -> None:
    rules = alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    assert {
        "TTSBotDown",
        "TTSNoHeartbeat",
        "TTSSpeechHalted",
        "TTSCreditsLow",
        "TTSRateLimitedShareHigh",
        "TTSQueueWaitHigh",
    } <= set(names)
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]


def test_promtool_checks_the_rules() -> None:
    promtool = tool("promtool")
    done = subprocess.run(
        [promtool, "check", "rules", str(ALERTS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in done.stdout


def expr_of(alert: str) -> str:
    (rule,) = [rule for rule in alert_rules() if rule["alert"] == alert]
    return str(rule["expr"])


def case(
    alert: str, series: dict[str, str], at: str, expected: list[tuple[str, float]]
) -> dict[str, Any]:
    """One promtool unit test: `alert`'s condition over `series`, evaluated at `at`."""
    return {
        "interval": "1m",
        "input_series": [{"series": name, "values": values} for name, values in series.items()],
        "promql_expr_test": [
            {
                "expr": expr_of(alert),
                "eval_time": at,
                "exp_samples": [{"labels": labels, "value": value} for labels, value in expected],
            }
        ],
    }


def test_the_alerts_fire_when_they_should_and_only_then(tmp_path: Path) -> None:
    """Each condition evaluated by Prometheus' own engine over made-up series."""
    promtool = tool("promtool")
    calls = "tts_api_calls_total{job='gemini-tts-bot', instance='bot:9108', status='%s'}"
    wait = "tts_queue_wait_seconds_bucket{job='gemini-tts-bot', instance='bot:9108', le='%s'}"
    tests = [
        case(
            "TTSSpeechHalted",
            {f"tts_speech_halted{SERIES}": "0 0 1 1"},
            "3m",
            [
                (f"tts_speech_halted{SERIES}", 1),
            ],
        ),
        case("TTSSpeechHalted", {f"tts_speech_halted{SERIES}": "0 0 0 0"}, "3m", []),
        # 3 calls in 10 answered 429: too many. 1 in 10: the pacing works.
        case(
            "TTSRateLimitedShareHigh",
            {calls % "429": "0+3x30", calls % "200": "0+7x30"},
            "30m",
            [(SERIES, 0.3)],
        ),
        case(
            "TTSRateLimitedShareHigh", {calls % "429": "0+1x30", calls % "200": "0+9x30"}, "30m", []
        ),
        # Every wait between 60 s and 300 s: the 95th percentile is 288 s.
        case(
            "TTSQueueWaitHigh",
            {wait % "60": "0x30", wait % "300": "0+10x30", wait % "+Inf": "0+10x30"},
            "30m",
            [('{job="gemini-tts-bot"}', 288)],
        ),
        case(
            "TTSQueueWaitHigh",
            {wait % "60": "0+10x30", wait % "300": "0+10x30", wait % "+Inf": "0+10x30"},
            "30m",
            [],
        ),
        # The heartbeat stopped at 3 minutes: at 10 it is 7 minutes old.
        case(
            "TTSNoHeartbeat",
            {f"tts_heartbeat_timestamp_seconds{SERIES}": "0+60x3 180x7"},
            "10m",
            [(SERIES, 420)],
        ),
        case("TTSNoHeartbeat", {f"tts_heartbeat_timestamp_seconds{SERIES}": "0+60x10"}, "10m", []),
        case(
            "TTSCreditsLow",
            {f"tts_credits_remaining{SERIES}": "5 3 0.5"},
            "2m",
            [
                (f"tts_credits_remaining{SERIES}", 0.5),
            ],
        ),
        # 1 credit a minute from 1000: gone in under a day. Steady: never.
        case(
            "TTSCreditsRunningOut",
            {f"tts_credits_remaining{SERIES}": "1000-1x400"},
            "6h",
            [(SERIES, 640 - 1440)],
        ),
        case("TTSCreditsRunningOut", {f"tts_credits_remaining{SERIES}": "1000x400"}, "6h", []),
        case(
            "TTSNarrationBehind",
            {f"tts_narration_oldest_wait_seconds{SERIES}": "0 400"},
            "1m",
            [(f"tts_narration_oldest_wait_seconds{SERIES}", 400)],
        ),
    ]
    spec = tmp_path / "alerts_test.yml"
    spec.write_text(
        yaml.safe_dump({"rule_files": [str(ALERTS)], "tests": tests}, sort_keys=False),
        encoding="utf-8",
    )
    done = subprocess.run(
        [promtool, "test", "rules", str(spec)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# -- the dashboard -----------------------------------------------------------------------------


def test_the_dashboard_is_importable_and_asks_for_its_data_source() -> None:
    board = dashboard()
    assert board["uid"] == "gemini-tts-bot"
    assert board["id"] is None  # Grafana assigns it on import.
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    everything = list(panels(board))
    ids = [panel["id"] for panel in everything]
    assert len(ids) == len(set(ids))
    titles = set()
    for panel in everything:
        if panel["type"] == "row":
            continue
        titles.add(panel["title"])
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"]["uid"] == "${datasource}"
    assert {"Speech", "Calls by status", "Queue wait", "Credits left", "Voice"} <= titles


def test_no_two_panels_overlap() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in panels(dashboard()):
        box = panel["gridPos"]
        assert box["x"] + box["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(box["x"], box["x"] + box["w"])
            for y in range(box["y"], box["y"] + box["h"])
        }
        assert not cells & taken, panel["title"]
        taken |= cells


# -- compose.yaml -----------------------------------------------------------------------------


def test_the_cluster_profile_never_starts_the_single_bot() -> None:
    """`docker compose --profile cluster up -d` (replacing .env's COMPOSE_PROFILES) must not
    start a second bot on the same token beside the shards."""
    cluster = started_by_up({"cluster"})
    assert "bot" not in cluster
    assert {"bot-shard-0", "bot-shard-1", "postgres", "redis"} <= cluster


def test_a_plain_up_with_the_example_settings_starts_the_single_bot_alone() -> None:
    assert example_compose_profiles() == {"single"}
    assert started_by_up(example_compose_profiles()) == {"bot"}


def test_every_service_belongs_to_exactly_one_deployment() -> None:
    """A service without a profile would start with either; one in both, twice over."""
    for name, service in compose_services().items():
        assert service.get("profiles") in (["single"], ["cluster"]), name


def test_the_readme_starts_the_cluster_by_its_profile_alone() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docker compose --profile cluster up -d\n" in readme
    assert "COMPOSE_PROFILES" in readme


# -- the operator's documents ------------------------------------------------------------------


def test_the_readme_installs_the_unit_and_says_settings_need_a_restart() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "deploy/gemini-tts-bot.service" in readme
    assert "systemctl enable --now gemini-tts-bot" in readme
    assert "systemctl restart gemini-tts-bot" in readme
    assert "deploy/grafana-dashboard.json" in readme
    assert "deploy/prometheus-alerts.yml" in readme
    assert "no reload" in readme.lower()


def test_the_changelog_starts_with_what_is_unreleased() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## (.+)$", changelog, re.MULTILINE)
    assert headings[0] == "Unreleased"
    for item in ("stale_after", "VOICE_STAGE_WAIT", "JobLostError", "402", "tts_queue_wait"):
        assert item in changelog, item
