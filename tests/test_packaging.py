"""What ships beside the code: the licence, the image's health check, compose, the README."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_license_file_matches_pyproject() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]
    assert declared == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n")


def test_prometheus_client_is_a_dependency() -> None:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(d.startswith("prometheus-client") for d in dependencies)


def test_the_image_checks_the_bots_real_health() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    check = re.search(r"^HEALTHCHECK .*\\\n\s+CMD (.+)$", dockerfile, re.MULTILINE)
    assert check is not None
    assert check.group(1) == '["python", "-m", "bot", "health"]'


def test_the_image_cannot_be_built_without_davey() -> None:
    """The build's check, run here against discord.py's own report of what it found."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    check = re.search(r'^RUN python -m discord -v \| grep -q "(.+)"$', dockerfile, re.MULTILINE)
    assert check is not None
    assert dockerfile.index("RUN pip install /tmp/wheels") < check.start()
    report = subprocess.run(
        [sys.executable, "-m", "discord", "-v"], capture_output=True, text=True, check=True
    ).stdout
    assert re.search(check.group(1), report, re.MULTILINE)
    assert not re.search(check.group(1), report.replace("davey", "dave"), re.MULTILINE)


def test_compose_restarts_the_bot_and_keeps_its_data() -> None:
    compose = (ROOT / "compose.yaml").read_text()
    assert "restart: unless-stopped" in compose
    assert "env_file: .env" in compose
    assert "- tts-data:/data" in compose
    assert re.search(r"^volumes:\n  tts-data:", compose, re.MULTILINE)


def test_compose_cluster_profile_runs_two_shard_processes_on_shared_engines() -> None:
    """PostgreSQL, Redis and two bots splitting the shards, all in the `cluster` profile (so a
    plain `docker compose up` still runs the single bot); every ${VAR} has a default, since
    compose interpolates the whole file whatever the profile."""
    compose = (ROOT / "compose.yaml").read_text()
    services = re.findall(r"^  ([\w-]+):\n", compose.split("\nservices:\n", 1)[1], re.M)
    assert {"bot", "bot-shard-0", "bot-shard-1", "postgres", "redis"} <= set(services)
    assert compose.count("profiles: [cluster]") == 3  # the bots' anchor, postgres, redis
    assert re.findall(r'SHARD_IDS: "(\d+)"', compose) == ["0", "1"]
    assert 'SHARD_COUNT: "2"' in compose
    assert "REDIS_URL: redis://redis:6379/0" in compose
    assert "DATABASE_URL: postgresql://" in compose
    assert all(":-" in ref for ref in re.findall(r"\$\{[^}]*\}", compose))


def test_readme_runs_docker_with_a_restart_policy_and_its_tables_hold() -> None:
    readme = (ROOT / "README.md").read_text()
    runs = [line for line in readme.splitlines() if line.startswith("docker run -d")]
    assert runs
    assert all("--restart unless-stopped" in line for line in runs)
    for line in readme.splitlines():
        if line.startswith("| `/"):
            assert line.count(" | ") == 1, line  # Two cells: a stray | breaks the table.


def test_the_readme_links_only_into_the_repository() -> None:
    """Every link in the README leads to a file of this repository: nothing outside it (a
    sibling folder, a website) is part of what ships."""
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", readme)
    assert targets  # The API notes at least.
    for target in targets:
        path = target.split("#", 1)[0]
        assert "://" not in target, target
        assert not path.startswith(("/", "..")), target
        assert (ROOT / path).exists(), target
    assert "../shared" not in readme


def test_the_image_keeps_only_what_runs() -> None:
    """The runtime stage installs a wheel built in a stage of its own: no source tree, `build/`
    or egg-info is copied into it, and the build context leaves those out too."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", dockerfile, flags=re.MULTILINE)[1:]
    assert len(stages) == 2
    assert stages[0].startswith("python:3.11-slim AS build")
    runtime = stages[1]
    assert "COPY --from=build /wheels" in runtime
    assert not re.search(r"^COPY (?!--from=build)", runtime, re.MULTILINE)
    assert "USER bot" in runtime
    ignored = (ROOT / ".dockerignore").read_text().split()
    for leftover in ("build", "*.egg-info", "tests", ".venv"):
        assert leftover in ignored
