"""What names the keys a cluster's processes share about the bot itself (its shards, its
members' turns, its operator's alerts), as opposed to the Segmind key's window and clips.

Those belong to one Discord application: two bots sharing one Redis (and maybe one Segmind
key) must neither refuse each other's shards nor silence each other's alerts. So they are
named after the Discord token, hashed by `key_prefix` (never the token itself); without one
(the terminal, tests) after the Segmind key.
"""

from __future__ import annotations

from bot.config import Settings

__all__ = ["cluster_secret"]


def cluster_secret(settings: Settings) -> str:
    """The secret `key_prefix` hashes into the names of this bot's shared keys."""
    for secret in (settings.discord_token, settings.segmind_api_key):
        if secret is not None and secret.get_secret_value():
            return secret.get_secret_value()
    return ""
