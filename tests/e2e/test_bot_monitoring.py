"""Watching the real bot process: every metric the Grafana dashboard and the Prometheus alert
rules in deploy/ name is in its /metrics after real calls, with live figures for what only the
running bot knows (the gateway, the heartbeat)."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests import fake_segmind as fs
from tests.deploy_files import missing_from
from tests.e2e.discord_emulator import Emulator
from tests.e2e.discord_emulator.state import ALICE
from tests.e2e.harness import running_bot
from tests.e2e.test_bot_operations import free_port


async def test_the_dashboard_and_alerts_find_every_metric_they_name(
    emulator: Emulator, segmind: fs.FakeSegmind, tmp_path: Path
) -> None:
    port = free_port()
    segmind.enqueue(fs.rate_limited(retry_after=0.2))
    async with running_bot(emulator, segmind, tmp_path, METRICS_PORT=str(port)):
        interaction = await emulator.interact(
            "speak", user_id=ALICE, text="Numbers for the dashboard.", play=False
        )
        await emulator.wait_for(
            lambda: any(r.files for r in emulator.requests_for(interaction)), within=15
        )
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/metrics") as response,
        ):
            assert response.status == 200
            text = await response.text()
    samples: dict[str, set[str]] = {}
    values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, set()).update(sample.labels)
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    assert missing_from(samples) == []
    assert values[("tts_api_calls_total", (("status", "429"),))] == 1
    assert values[("tts_api_calls_total", (("status", "200"),))] == 1
    assert values[("tts_queue_wait_seconds_count", ())] == 1
    assert values[("tts_gateway_connected", ())] == 1
    assert 0 < time.time() - values[("tts_heartbeat_timestamp_seconds", ())] < 60
    assert values[("tts_speech_halted", ())] == 0
    assert segmind.api_key not in text
