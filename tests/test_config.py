from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bot.config import Settings, load_settings, require
from bot.errors import SettingsError
from tests.conftest import TEST_API_KEY


def test_defaults_match_the_free_plan_and_documented_api() -> None:
    settings = load_settings(env_file=None)
    assert settings.segmind_base_url == "https://api.segmind.com/v1"
    assert settings.segmind_rpm == 5
    assert settings.default_voice == "Zephyr"
    assert settings.default_temperature == pytest.approx(0.4)
    assert settings.segmind_api_key is None


def test_reads_environment_and_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = tmp_path / ".env"
    env.write_text("SEGMIND_API_KEY=from-file\nSEGMIND_RPM=50\nDEFAULT_VOICE=kore\n")
    monkeypatch.setenv("SEGMIND_BASE_URL", "http://127.0.0.1:9999/v1/")
    settings = load_settings(env_file=env)
    assert settings.segmind_api_key is not None
    assert settings.segmind_api_key.get_secret_value() == "from-file"
    assert settings.segmind_rpm == 50
    assert settings.default_voice == "Kore"
    assert settings.segmind_base_url == "http://127.0.0.1:9999/v1"


def test_secrets_never_print(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(discord_token="discord-SECRET-token")
    for text in (str(settings), repr(settings), str(settings.model_dump())):
        assert TEST_API_KEY not in text
        assert "discord-SECRET-token" not in text


def test_invalid_values_are_named_without_echoing_input() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(env_file=None, segmind_rpm=0, default_voice="Nobody", segmind_api_key="k")
    message = str(info.value)
    assert "SEGMIND_RPM" in message
    assert "DEFAULT_VOICE" in message
    assert ".env.example" in message


def test_require_names_every_missing_setting(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(segmind_api_key="  ")
    with pytest.raises(SettingsError) as info:
        require(settings, "discord_token", "segmind_api_key")
    assert "DISCORD_TOKEN, SEGMIND_API_KEY" in str(info.value)
    require(make_settings(), "segmind_api_key")  # Present: no error.


def test_env_example_documents_every_setting() -> None:
    example = (Path(__file__).parent.parent / ".env.example").read_text()
    for name in Settings.model_fields:
        assert f"{name.upper()}=" in example, name


def test_every_optional_setting_uncommented_empty_means_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`.env.example`'s `# NAME=` lines, uncommented as shown, must not stop the bot."""
    example = (Path(__file__).parent.parent / ".env.example").read_text()
    env = tmp_path / ".env"
    env.write_text(
        "\n".join(
            line.removeprefix("# ").split("=")[0] + "="
            for line in example.splitlines()
            if "=" in line and line.removeprefix("# ").split("=")[0].isupper()
        )
        + "\n"
    )
    assert "DEV_GUILD_ID=\n" in env.read_text()
    settings = load_settings(env_file=env)
    assert settings.dev_guild_id is None
    assert settings.alert_channel_id is None
    assert settings.segmind_rpm == 5
    assert settings.discord_token is None


def test_empty_environment_values_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """`docker run --env-file` sets `ALERT_CHANNEL_ID=` as an empty variable."""
    for name in ("DEV_GUILD_ID", "ALERT_CHANNEL_ID", "SEGMIND_RPM", "DEFAULT_VOICE"):
        monkeypatch.setenv(name, "")
    settings = load_settings(env_file=None)
    assert settings.dev_guild_id is None
    assert settings.alert_channel_id is None
    assert settings.segmind_rpm == 5
    assert settings.default_voice == "Zephyr"


def test_shards_across_processes_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SHARD_COUNT", "4")
    monkeypatch.setenv("SHARD_IDS", "2, 3")
    settings = load_settings(env_file=None)
    assert settings.shard_count == 4
    assert settings.shard_ids == (2, 3)
    assert load_settings(env_file=None, shard_ids="", shard_count=None).shard_ids == ()


@pytest.mark.parametrize(
    ("ids", "count"), [("0,1", None), ("4", 4), ("1,1", 4), ("-1", 4), ("a", 4)]
)
def test_shard_ids_must_fit_the_count(ids: str, count: int | None) -> None:
    with pytest.raises(SettingsError, match="SHARD"):
        load_settings(env_file=None, shard_ids=ids, shard_count=count)


def test_redis_url_is_checked_and_kept_out_of_the_repr() -> None:
    url = "redis://:hunter2-secret@cache:6379/0"
    settings = load_settings(env_file=None, redis_url=url)
    assert settings.redis_url == url
    assert "hunter2-secret" not in repr(settings)
    with pytest.raises(SettingsError, match="REDIS_URL"):
        load_settings(env_file=None, redis_url="http://cache:6379")


def test_the_shared_clip_budget_and_redis_key_prefix_default_to_the_old_keys() -> None:
    settings = load_settings(env_file=None)
    assert settings.cache_shared_mb == 256
    assert settings.redis_key_prefix == "tts"
    assert load_settings(env_file=None, redis_key_prefix=" staging.bot-2 ").redis_key_prefix == (
        "staging.bot-2"
    )


@pytest.mark.parametrize("prefix", ["two words", "tts{1}", "a}", "-x", "x" * 65, "  "])
def test_a_redis_key_prefix_that_would_break_keys_is_refused(prefix: str) -> None:
    with pytest.raises(SettingsError, match="REDIS_KEY_PREFIX"):
        load_settings(env_file=None, redis_key_prefix=prefix)


def test_a_negative_shared_clip_budget_is_refused() -> None:
    with pytest.raises(SettingsError, match="CACHE_SHARED_MB"):
        load_settings(env_file=None, cache_shared_mb=-1)
