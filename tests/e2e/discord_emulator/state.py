"""The emulated world: one guild with its channels, roles, members and voice states.

Payloads follow Discord's API v10 shapes closely enough for discord.py's parsers and its
permission arithmetic (roles plus channel overwrites), which the bot's checks rely on.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

APP_ID = 710000000000000001
BOT_ID = APP_ID  # A bot user's id is its application's id, as on Discord.
OWNER_ID = 710000000000000002
GUILD_ID = 710000000000000003
TEXT_CHANNEL_ID = 710000000000000004
VOICE_CHANNEL_ID = 710000000000000005
STAGE_CHANNEL_ID = 710000000000000006
BOT_ROLE_ID = 710000000000000007
ALICE = 710000000000000011
BOB = 710000000000000012

# Permission bits (https://discord.com/developers/docs/topics/permissions).
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
CONNECT = 1 << 20
SPEAK = 1 << 21
MUTE_MEMBERS = 1 << 22
MOVE_MEMBERS = 1 << 24
USE_VAD = 1 << 25
USE_APPLICATION_COMMANDS = 1 << 31
REQUEST_TO_SPEAK = 1 << 32
SEND_VOICE_MESSAGES = 1 << 46
MANAGE_GUILD = 1 << 5
ADMINISTRATOR = 1 << 3
#: What @everyone may do on a fresh server, roughly.
EVERYONE_PERMISSIONS = (
    VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | CONNECT
    | SPEAK
    | USE_VAD
    | USE_APPLICATION_COMMANDS
    | REQUEST_TO_SPEAK
    | SEND_VOICE_MESSAGES
)
ALL_PERMISSIONS = (1 << 53) - 1

# Privileged intents: refused unless enabled "in the portal" (Emulator option).
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_PRESENCES = 1 << 8
INTENT_MESSAGE_CONTENT = 1 << 15
#: Application flags: Message Content enabled in the portal (approved, or unverified "limited").
GATEWAY_MESSAGE_CONTENT = 1 << 18
GATEWAY_MESSAGE_CONTENT_LIMITED = 1 << 19
PRIVILEGED_INTENTS = INTENT_GUILD_MEMBERS | INTENT_GUILD_PRESENCES | INTENT_MESSAGE_CONTENT

_ids = itertools.count()
#: Discord's epoch (2015-01-01) in Unix milliseconds: snowflakes carry their creation time.
DISCORD_EPOCH_MS = 1_420_070_400_000


def snowflake() -> int:
    """A fresh id whose timestamp is now, as Discord's are (discord.py reads `created_at`,
    and an interaction's token lifetime, from it)."""
    now_ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
    return (now_ms << 22) | (next(_ids) & 0x3FFFFF)


def timestamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())


def new_message(
    channel_id: int, author: dict[str, Any], content: str = "", *, kind: int = 0
) -> dict[str, Any]:
    """A message as Discord first stores it, whoever writes it: the fields every one has."""
    return {
        "id": str(snowflake()),
        "channel_id": str(channel_id),
        "author": author,
        "content": content,
        "timestamp": timestamp(),
        "edited_timestamp": None,
        "tts": False,
        "mention_everyone": False,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "components": [],
        "pinned": False,
        "type": kind,
        "flags": 0,
    }


class Clock:
    """Monotonic seconds, shiftable, so a test can jump past Discord's 3 s and 15 min limits
    without waiting for them."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class Changes:
    """Wakes waiters whenever the emulator records something, so tests wait on conditions
    rather than on sleeps."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()

    async def wait_for(self, predicate: Callable[[], Any], within: float) -> Any:
        async with asyncio.timeout(within):
            while True:
                result = predicate()
                if result:
                    return result
                self._event.clear()
                await self._event.wait()


def user_payload(user_id: int, name: str, *, bot: bool = False) -> dict[str, Any]:
    return {
        "id": str(user_id),
        "username": name,
        "global_name": None if bot else name,
        "discriminator": "0",
        "avatar": None,
        "bot": bot,
        "public_flags": 0,
    }


@dataclass
class Member:
    user_id: int
    name: str
    bot: bool = False
    roles: list[int] = field(default_factory=list)
    #: The language their Discord client is set to, sent with each of their interactions.
    locale: str = "en-US"

    def user(self) -> dict[str, Any]:
        return user_payload(self.user_id, self.name, bot=self.bot)

    def payload(self) -> dict[str, Any]:
        return {
            "user": self.user(),
            "nick": None,
            "roles": [str(role) for role in self.roles],
            "joined_at": "2025-01-01T00:00:00+00:00",
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
        }


@dataclass
class VoiceState:
    user_id: int
    channel_id: int | None
    session_id: str
    self_deaf: bool = False
    self_mute: bool = False
    #: On a Stage: not a speaker (audience), so not heard. Everyone joins a Stage suppressed.
    suppress: bool = False
    request_to_speak_timestamp: str | None = None

    def payload(self, guild_id: int | None = None, member: Member | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "user_id": str(self.user_id),
            "channel_id": str(self.channel_id) if self.channel_id else None,
            "session_id": self.session_id,
            "deaf": False,
            "mute": False,
            "self_deaf": self.self_deaf,
            "self_mute": self.self_mute,
            "self_video": False,
            "suppress": self.suppress,
            "request_to_speak_timestamp": self.request_to_speak_timestamp,
        }
        if guild_id is not None:
            data["guild_id"] = str(guild_id)
        if member is not None:
            data["member"] = member.payload()
        return data


class World:
    """One guild, as the gateway describes it to the bot and REST refers to it. The first
    guild has the fixed ids above; more (`Emulator.add_guild`) get ids of their own."""

    def __init__(
        self,
        *,
        bot_name: str = "TTS",
        guild_id: int = GUILD_ID,
        text_channel_id: int = TEXT_CHANNEL_ID,
        voice_channel_id: int = VOICE_CHANNEL_ID,
        stage_channel_id: int = STAGE_CHANNEL_ID,
        bot_role_id: int = BOT_ROLE_ID,
    ) -> None:
        self.guild_id = guild_id
        self.text_channel_id = text_channel_id
        self.voice_channel_id = voice_channel_id
        self.stage_channel_id = stage_channel_id
        self.bot_role_id = bot_role_id
        self.bot = Member(BOT_ID, bot_name, bot=True, roles=[bot_role_id])
        self.members: dict[int, Member] = {
            BOT_ID: self.bot,
            ALICE: Member(ALICE, "alice"),
            BOB: Member(BOB, "bob"),
            OWNER_ID: Member(OWNER_ID, "owner"),
        }
        self.voice_states: dict[int, VoiceState] = {}
        self.text_channels = {text_channel_id}
        self.voice_channels = {voice_channel_id, stage_channel_id}
        self.stage_channels = {stage_channel_id}
        #: Each role's guild-wide permissions; change them before the bot connects (they are
        #: sent in GUILD_CREATE), e.g. to give the bot's role Mute Members.
        self.role_permissions: dict[int, int] = {
            self.guild_id: EVERYONE_PERMISSIONS,
            bot_role_id: EVERYONE_PERMISSIONS,
        }
        self.role_names: dict[int, str] = {self.guild_id: "@everyone", bot_role_id: "TTS"}
        #: Channel permission overwrites, as Discord sends them: {"id", "type" (0 role,
        #: 1 member), "allow", "deny"}.
        self.overwrites: dict[int, list[dict[str, Any]]] = {}
        self.dm_channels: dict[int, int] = {}  # channel id -> recipient
        #: The server's preferred language (Server Settings → Community → Overview): in
        #: GUILD_CREATE and as every interaction's `guild_locale`.
        self.preferred_locale = "en-US"

    def channel_exists(self, channel_id: int) -> bool:
        return (
            channel_id in self.text_channels
            or channel_id in self.voice_channels
            or channel_id in self.dm_channels
        )

    def application(self) -> dict[str, Any]:
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
            "flags": GATEWAY_MESSAGE_CONTENT_LIMITED,
            "summary": "",
        }

    def add_role(self, name: str, permissions: int = 0, *, members: tuple[int, ...] = ()) -> int:
        """A role the server's admins made, given to `members`. Add it before the bot connects:
        roles and members' roles are sent in GUILD_CREATE (the bot has no GUILD_MEMBERS intent,
        so Discord would tell it of a member's new roles only in their messages and voice
        states, which carry the member)."""
        role_id = snowflake()
        self.role_permissions[role_id] = permissions
        self.role_names[role_id] = name
        for user_id in members:
            self.members[user_id].roles.append(role_id)
        return role_id

    def overwrite(self, channel_id: int, target_id: int, *, allow: int = 0, deny: int = 0) -> None:
        """Set a channel's overwrite for a role or a member (told apart by the id). The bot
        learns of its own in GUILD_CREATE, so set those before it connects; a member's count
        from their next interaction, which carries their permissions resolved in the channel."""
        kind = 0 if target_id in self.role_names else 1
        kept = [o for o in self.overwrites.get(channel_id, []) if int(o["id"]) != target_id]
        entry = {"id": str(target_id), "type": kind, "allow": str(allow), "deny": str(deny)}
        self.overwrites[channel_id] = [*kept, entry]

    def role_payload(self, role_id: int) -> dict[str, Any]:
        """A role as Discord sends it (in GUILD_CREATE, and resolved in an option)."""
        return {
            "id": str(role_id),
            "name": self.role_names[role_id],
            "color": 0,
            "hoist": False,
            "position": list(self.role_names).index(role_id),
            "permissions": str(self.role_permissions[role_id]),
            "managed": role_id == self.bot_role_id,
            "mentionable": False,
            "flags": 0,
        }

    def roles(self) -> list[dict[str, Any]]:
        return [self.role_payload(role_id) for role_id in self.role_names]

    def channels(self) -> list[dict[str, Any]]:
        def channel(channel_id: int, kind: int, name: str, position: int) -> dict[str, Any]:
            data: dict[str, Any] = {
                "id": str(channel_id),
                "type": kind,
                "guild_id": str(self.guild_id),
                "name": name,
                "position": position,
                "permission_overwrites": self.overwrites.get(channel_id, []),
                "nsfw": False,
                "parent_id": None,
                "last_message_id": None,
                "rate_limit_per_user": 0,
            }
            if kind in (2, 13):
                data.update(bitrate=64000, user_limit=0, rtc_region=None)
            else:
                data["topic"] = None
            return data

        return [
            channel(self.text_channel_id, 0, "general", 0),
            channel(self.voice_channel_id, 2, "Voice", 1),
            channel(self.stage_channel_id, 13, "Stage", 2),
        ]

    def channel_payload(self, channel_id: int) -> dict[str, Any] | None:
        for channel in self.channels():
            if int(channel["id"]) == channel_id:
                return channel
        recipient = self.dm_channels.get(channel_id)
        if recipient is None:
            return None
        return {
            "id": str(channel_id),
            "type": 1,
            "recipients": [self.members[recipient].user()],
            "last_message_id": None,
        }

    def guild_create(self) -> dict[str, Any]:
        return {
            "id": str(self.guild_id),
            "name": "Emulated",
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "owner_id": str(OWNER_ID),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": self.roles(),
            "emojis": [],
            "stickers": [],
            "features": [],
            "mfa_level": 0,
            "application_id": None,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "vanity_url_code": None,
            "description": None,
            "banner": None,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": self.preferred_locale,
            "public_updates_channel_id": None,
            "nsfw_level": 0,
            "premium_progress_bar_enabled": False,
            "joined_at": "2025-01-01T00:00:00+00:00",
            "large": False,
            "unavailable": False,
            "member_count": len(self.members),
            "members": [member.payload() for member in self.members.values()],
            "voice_states": [state.payload() for state in self.voice_states.values()],
            "channels": self.channels(),
            "threads": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }

    def member_permissions(self, user_id: int) -> int:
        """Guild-wide: @everyone's and the member's roles' permissions (all for the owner
        or an administrator)."""
        if user_id == OWNER_ID:
            return ALL_PERMISSIONS
        permissions = self.role_permissions[self.guild_id]
        for role in self.members[user_id].roles:
            permissions |= self.role_permissions.get(role, 0)
        return ALL_PERMISSIONS if permissions & ADMINISTRATOR else permissions

    def channel_permissions(self, user_id: int, channel_id: int) -> int:
        """In one channel, as Discord computes them: the guild-wide permissions, then the
        @everyone overwrite, the member's roles' overwrites together, the member's own."""
        permissions = self.member_permissions(user_id)
        if permissions == ALL_PERMISSIONS:
            return permissions
        overwrites = {int(o["id"]): o for o in self.overwrites.get(channel_id, [])}

        def apply(permissions: int, allow: int, deny: int) -> int:
            return (permissions & ~deny) | allow

        everyone = overwrites.get(self.guild_id)
        if everyone is not None:
            permissions = apply(permissions, int(everyone["allow"]), int(everyone["deny"]))
        allow = deny = 0
        for role in self.members[user_id].roles:
            overwrite = overwrites.get(role)
            if overwrite is not None and overwrite["type"] == 0:
                allow |= int(overwrite["allow"])
                deny |= int(overwrite["deny"])
        permissions = apply(permissions, allow, deny)
        own = overwrites.get(user_id)
        if own is not None and own["type"] == 1:
            permissions = apply(permissions, int(own["allow"]), int(own["deny"]))
        return permissions

    def set_voice(self, user_id: int, channel_id: int | None, session_id: str) -> VoiceState:
        """Join, move or leave. Joining a Stage starts suppressed (in the audience); staying
        in the same channel keeps the state (a speaker stays a speaker)."""
        old = self.voice_states.get(user_id)
        if old is not None and channel_id is not None and old.channel_id == channel_id:
            old.session_id = session_id
            return old
        state = VoiceState(user_id, channel_id, session_id)
        state.suppress = channel_id in self.stage_channels
        if channel_id is None:
            self.voice_states.pop(user_id, None)
        else:
            self.voice_states[user_id] = state
        return state
