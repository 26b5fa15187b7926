"""Raw Discord payloads and a recorder of discord.py's REST calls, for wiring tests.

Wiring tests build real `discord.Interaction`s from gateway payloads, run them through the
bot's real command tree, and let aioresponses answer discord.com like Discord would, so
what is checked is what would really have been sent.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aioresponses import CallbackResult, aioresponses
from yarl import URL

API = "https://discord.com/api/v10"
APP_ID = 700000000000000001
BOT_ID = 700000000000000002
GUILD_ID = 700000000000000003
CHANNEL_ID = 700000000000000004
OWNER_ID = 700000000000000005
DM_CHANNEL_ID = 700000000000000006
_ids = itertools.count()
#: Discord's epoch (2015-01-01) in Unix milliseconds: snowflakes carry their creation time.
DISCORD_EPOCH_MS = 1_420_070_400_000

EPHEMERAL = 1 << 6


def snowflake() -> int:
    """A fresh id whose timestamp is now, as Discord's are (discord.py reads `created_at`,
    and an interaction's token lifetime, from it)."""
    now_ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
    return (now_ms << 22) | (next(_ids) & 0x3FFFFF)


def user_payload(user_id: int, name: str, *, bot: bool = False) -> dict[str, Any]:
    return {
        "id": str(user_id),
        "username": name,
        "global_name": name,
        "discriminator": "0",
        "avatar": None,
        "bot": bot,
    }


def application_payload() -> dict[str, Any]:
    return {
        "id": str(APP_ID),
        "name": "TTS",
        "description": "",
        "icon": None,
        "bot_public": True,
        "bot_require_code_grant": False,
        "owner": user_payload(OWNER_ID, "owner"),
        "team": None,
        "verify_key": "0" * 64,
        "flags": 0,
    }


#: Every permission, as Discord sends a server manager's.
ALL_PERMISSIONS = 0x1FFFFFFFFFF
#: An ordinary member: view, send, connect, speak.
MEMBER_PERMISSIONS = (1 << 10) | (1 << 11) | (1 << 20) | (1 << 21)


def member_payload(
    user_id: int, name: str = "member", permissions: int = ALL_PERMISSIONS
) -> dict[str, Any]:
    return {
        "user": user_payload(user_id, name),
        "roles": [],
        "joined_at": "2025-01-01T00:00:00+00:00",
        "deaf": False,
        "mute": False,
        "flags": 0,
        "permissions": str(permissions),
    }


def channel_payload() -> dict[str, Any]:
    return {
        "id": str(CHANNEL_ID),
        "type": 0,
        "guild_id": str(GUILD_ID),
        "name": "general",
        "position": 0,
        "permission_overwrites": [],
        "nsfw": False,
        "parent_id": None,
    }


def message_payload(
    content: str, *, author_id: int, message_id: int | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "id": str(message_id or snowflake()),
        "channel_id": str(CHANNEL_ID),
        "guild_id": str(GUILD_ID),
        "author": user_payload(author_id, "author"),
        "content": content,
        "timestamp": "2025-01-01T00:00:00+00:00",
        "edited_timestamp": None,
        "tts": False,
        "mention_everyone": False,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "pinned": False,
        "type": 0,
        "flags": 0,
        **extra,
    }


def _interaction(
    kind: int, data: dict[str, Any], user_id: int, permissions: int = ALL_PERMISSIONS
) -> dict[str, Any]:
    interaction_id = snowflake()
    return {
        "id": str(interaction_id),
        "application_id": str(APP_ID),
        "type": kind,
        "token": f"token-{interaction_id}",
        "version": 1,
        "guild_id": str(GUILD_ID),
        "channel_id": str(CHANNEL_ID),
        "channel": channel_payload(),
        "member": member_payload(user_id, permissions=permissions),
        "app_permissions": str(0x1FFFFFFFFFF),
        "locale": "en-US",
        "guild_locale": "en-US",
        "entitlements": [],
        "authorizing_integration_owners": {"0": str(GUILD_ID)},
        "context": 0,
        "attachment_size_limit": 10 * 1024 * 1024,
        "data": data,
    }


_OPTION_TYPES = {str: 3, int: 4, bool: 5, float: 10}
#: Discord's option type for a user (a member, in a server).
USER_OPTION = 6


@dataclass(frozen=True)
class Picked:
    """A user option's value: the member chosen, whom Discord resolves in the payload."""

    user_id: int
    name: str = "member"


def _resolved(options: dict[str, Any]) -> dict[str, Any]:
    """The `resolved` block Discord sends with user options: each user and their membership."""
    picked = [value for value in options.values() if isinstance(value, Picked)]
    if not picked:
        return {}
    users, members = {}, {}
    for choice in picked:
        member = member_payload(choice.user_id, choice.name)
        users[str(choice.user_id)] = member.pop("user")
        members[str(choice.user_id)] = member
    return {"resolved": {"users": users, "members": members}}


def _options(options: dict[str, Any], focused: str | None) -> list[dict[str, Any]]:
    result = []
    for name, value in options.items():
        if isinstance(value, Picked):
            result.append({"name": name, "type": USER_OPTION, "value": str(value.user_id)})
            continue
        option: dict[str, Any] = {"name": name, "type": _OPTION_TYPES[type(value)], "value": value}
        if name == focused:
            option["focused"] = True
        result.append(option)
    return result


def slash_command(
    name: str,
    *,
    user_id: int,
    subcommand: str | None = None,
    permissions: int = ALL_PERMISSIONS,
    **options: Any,
) -> dict[str, Any]:
    """A chat-input command interaction, as the gateway delivers it."""
    given = _options(options, None)
    if subcommand is not None:
        given = [{"name": subcommand, "type": 1, "options": given}]
    data = {"id": str(snowflake()), "name": name, "type": 1, "options": given, **_resolved(options)}
    return _interaction(2, data, user_id, permissions)


def in_dm(payload: dict[str, Any]) -> dict[str, Any]:
    """The same interaction, sent from the member's DMs with the bot: no server, no member,
    a DM channel, and the bot-DM context (1), as Discord delivers it."""
    payload = dict(payload)
    member = payload.pop("member")
    payload.pop("guild_id")
    payload.pop("guild_locale", None)
    payload["user"] = member["user"]
    payload["channel_id"] = str(DM_CHANNEL_ID)
    payload["channel"] = {"id": str(DM_CHANNEL_ID), "type": 1, "recipients": [member["user"]]}
    payload["context"] = 1
    payload["authorizing_integration_owners"] = {"0": str(payload["user"]["id"])}
    payload["data"] = {k: v for k, v in payload["data"].items() if k != "guild_id"}
    if "resolved" in payload["data"]:  # Outside a server a picked user has no membership.
        resolved = payload["data"]["resolved"]
        payload["data"]["resolved"] = {k: v for k, v in resolved.items() if k != "members"}
    return payload


def in_locale(payload: dict[str, Any], locale: str) -> dict[str, Any]:
    """The same interaction from a member whose Discord client is set to `locale` ("de")."""
    return {**payload, "locale": locale}


def autocomplete(name: str, focused: str, *, user_id: int, **options: Any) -> dict[str, Any]:
    data = {"id": str(snowflake()), "name": name, "type": 1, "options": _options(options, focused)}
    return _interaction(4, data, user_id)


def component(
    custom_id: str,
    *,
    user_id: int,
    message: dict[str, Any],
    values: list[str] | None = None,
    permissions: int = ALL_PERMISSIONS,
) -> dict[str, Any]:
    """A press on a button (or a pick in a select menu, with `values`) of the bot's `message`,
    as the gateway delivers it: type 3, the component's custom id and type, and the message."""
    data: dict[str, Any] = {"custom_id": custom_id, "component_type": 2}
    if values is not None:
        data.update(component_type=3, values=values)
    payload = _interaction(3, data, user_id, permissions)
    payload["message"] = message
    return payload


def bot_message(answer: RestCall) -> dict[str, Any]:
    """The message the bot posted with an interaction answer (its content and components)."""
    assert answer.json is not None
    data = answer.json.get("data", answer.json)
    return message_payload(
        data.get("content") or "",
        author_id=BOT_ID,
        components=data.get("components") or [],
        flags=data.get("flags") or 0,
    )


def message_command(name: str, message: dict[str, Any], *, user_id: int) -> dict[str, Any]:
    data = {
        "id": str(snowflake()),
        "name": name,
        "type": 3,
        "target_id": message["id"],
        "resolved": {"messages": {message["id"]: message}},
    }
    return _interaction(2, data, user_id)


@dataclass
class RestCall:
    """One request discord.py made, decoded: JSON body and any attached files."""

    method: str
    url: URL
    json: dict[str, Any] | None
    files: dict[str, bytes] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return self.url.path.removeprefix("/api/v10")


def _decode_body(kwargs: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, bytes]]:
    data = kwargs.get("data")
    if isinstance(kwargs.get("json"), dict):
        return kwargs["json"], {}
    if isinstance(data, str | bytes):
        return json.loads(data), {}
    if isinstance(data, aiohttp.FormData):
        payload: dict[str, Any] | None = None
        files: dict[str, bytes] = {}
        for options, _headers, value in data._fields:
            name = options["name"]
            if name == "payload_json":
                payload = json.loads(value)
            else:
                value.seek(0)
                files[options.get("filename", name)] = value.read()
        return payload, files
    return None, {}


class FakeDiscord:
    """Answers the REST routes the bot uses and records every call in order."""

    def __init__(self, mocked: aioresponses) -> None:
        self.calls: list[RestCall] = []
        self.changed = asyncio.Event()
        api = re.escape(API)
        mocked.get(f"{API}/users/@me", payload=user_payload(BOT_ID, "TTS", bot=True), repeat=True)
        mocked.get(f"{API}/oauth2/applications/@me", payload=application_payload(), repeat=True)
        mocked.post(
            re.compile(rf"^{api}/interactions/\d+/[^/]+/callback.*"),
            callback=self._callback,
            repeat=True,
        )
        mocked.patch(
            re.compile(rf"^{api}/webhooks/{APP_ID}/[^/]+/messages/@original.*"),
            callback=self._message,
            repeat=True,
        )
        mocked.post(
            re.compile(rf"^{api}/webhooks/{APP_ID}/[^/]+(\?.*)?$"),
            callback=self._message,
            repeat=True,
        )
        mocked.delete(
            re.compile(rf"^{api}/webhooks/{APP_ID}/[^/]+/messages/.*"),
            callback=self._record_only,
            repeat=True,
        )
        mocked.post(f"{API}/users/@me/channels", callback=self._dm_channel, repeat=True)
        mocked.post(
            re.compile(rf"^{api}/channels/\d+/messages$"),
            callback=self._channel_message,
            repeat=True,
        )

    def _record(self, method: str, url: URL, kwargs: dict[str, Any]) -> RestCall:
        body, files = _decode_body(kwargs)
        call = RestCall(method, url, body, files)
        self.calls.append(call)
        self.changed.set()
        return call

    def _callback(self, url: URL, **kwargs: Any) -> CallbackResult:
        call = self._record("POST", url, kwargs)
        interaction_id = url.path.split("/")[4]
        kind = (call.json or {}).get("type", 0)
        return CallbackResult(
            status=200,
            payload={
                "interaction": {
                    "id": interaction_id,
                    "type": 2,
                    "response_message_loading": kind == 5,
                    "response_message_ephemeral": bool(
                        ((call.json or {}).get("data") or {}).get("flags", 0) & EPHEMERAL
                    ),
                },
                "resource": {"type": kind},
            },
        )

    def _message(self, url: URL, **kwargs: Any) -> CallbackResult:
        method = "PATCH" if url.path.endswith("@original") else "POST"
        call = self._record(method, url, kwargs)
        body = call.json or {}
        attachments = [
            {
                "id": str(snowflake()),
                "filename": name,
                "size": len(data),
                "url": f"https://cdn.discordapp.com/{name}",
                "proxy_url": f"https://media.discordapp.net/{name}",
            }
            for name, data in call.files.items()
        ]
        message = message_payload(
            body.get("content") or "", author_id=BOT_ID, attachments=attachments
        )
        return CallbackResult(status=200, payload=message)

    def _dm_channel(self, url: URL, **kwargs: Any) -> CallbackResult:
        call = self._record("POST", url, kwargs)
        recipient = (call.json or {}).get("recipient_id", str(OWNER_ID))
        return CallbackResult(
            status=200,
            payload={
                "id": str(DM_CHANNEL_ID),
                "type": 1,
                "recipients": [user_payload(int(recipient), "owner")],
                "last_message_id": None,
            },
        )

    def _channel_message(self, url: URL, **kwargs: Any) -> CallbackResult:
        call = self._record("POST", url, kwargs)
        payload = message_payload((call.json or {}).get("content") or "", author_id=BOT_ID)
        payload["channel_id"] = url.path.split("/")[4]
        return CallbackResult(status=200, payload=payload)

    def channel_messages(self) -> list[RestCall]:
        """Messages the bot posted to channels (alerts, DMs), not interaction answers."""
        return [c for c in self.calls if re.search(r"/channels/\d+/messages$", c.url.path)]

    def _record_only(self, url: URL, **kwargs: Any) -> CallbackResult:
        self._record("DELETE", url, kwargs)
        return CallbackResult(status=204)

    def for_interaction(self, payload: dict[str, Any]) -> list[RestCall]:
        """The calls made for one interaction (its id or token is in the URL)."""
        keys = (payload["id"], payload["token"])
        return [c for c in self.calls if any(f"/{k}/" in f"{c.url.path}/" for k in keys)]

    async def wait_for(self, predicate: Any, within: float = 10.0) -> None:
        """Wait until `predicate(self.calls)` holds, re-checking at each new call."""
        async with asyncio.timeout(within):
            while not predicate(self.calls):
                self.changed.clear()
                await self.changed.wait()
