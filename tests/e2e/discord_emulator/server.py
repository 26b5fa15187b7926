"""The emulator: REST and gateway on one HTTP port, voice servers on their own TLS/UDP ports,
plus the helpers a test uses to play Discord's side (members typing, joining, leaving)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from tests.e2e.discord_emulator import rest, stage
from tests.e2e.discord_emulator.certs import Certificate, make_certificate
from tests.e2e.discord_emulator.components import find_component
from tests.e2e.discord_emulator.gateway import Gateway, GatewaySession
from tests.e2e.discord_emulator.listeners import Listener
from tests.e2e.discord_emulator.records import Interaction, RestRequest
from tests.e2e.discord_emulator.rtp import ReceivedAudio
from tests.e2e.discord_emulator.state import (
    APP_ID,
    BOT_ID,
    INTENT_MESSAGE_CONTENT,
    Changes,
    Clock,
    World,
    new_message,
    snowflake,
    timestamp,
)
from tests.e2e.discord_emulator.voice import VoiceServer

_OPTION_TYPES = {str: 3, int: 4, bool: 5, float: 10}
ROLE_OPTION = 8


@dataclass(frozen=True)
class RoleChoice:
    """A role picked in a role option: Discord sends its id as the value and the role itself
    in `data.resolved.roles`, which is where discord.py finds the `discord.Role`."""

    role_id: int


class Emulator:
    def __init__(
        self,
        cert_dir: Path,
        *,
        token: str = "emulated.bot-token.0123456789",
        allowed_privileged_intents: int = INTENT_MESSAGE_CONTENT,
        upload_limit: int = 10 * 1024 * 1024,
        token_ttl: float = rest.TOKEN_TTL,
        shards: int = 1,
        required_shards: int = 1,
    ) -> None:
        self.token = token
        self.allowed_privileged_intents = allowed_privileged_intents
        self.upload_limit = upload_limit
        self.token_ttl = token_ttl
        #: The shard count `GET /gateway/bot` recommends.
        self.shards = shards
        #: Fewer shards than this are refused with 4011 (Sharding required).
        self.required_shards = required_shards
        #: The voice servers' DAVE protocol version: 1 as Discord requires, 0 for a call
        #: Discord runs with transport encryption only.
        self.dave_version = 1
        #: Seconds DAVE's messages take between the voice server and a client (a network).
        self.dave_latency = 0.02
        #: Members' voice clients (DAVE only), by guild and member: each decrypts what the bot
        #: sends in its guild's call.
        self.clients: dict[tuple[int, int], Listener] = {}
        #: Seconds before the gateway answers an opcode 4, as a real network round trip takes.
        self.gateway_latency = 0.02
        self.cert_dir = cert_dir
        self.certificate: Certificate | None = None
        self.clock = Clock()
        self.changes = Changes()
        self.world = World()
        #: Every guild the bot is in, by id; `world` is the first.
        self.worlds: dict[int, World] = {self.world.guild_id: self.world}
        self.rest = rest.RestApi(self)
        self.stage = stage.StageApi(self)
        self.rest.add("PATCH", stage.ROUTE, True, self.stage.edit_my_voice_state)
        self.gateway = Gateway(self)
        self.requests: list[RestRequest] = []
        self.interactions: dict[int, Interaction] = {}
        self.commands: dict[int | None, list[dict[str, Any]]] = {}
        self.channel_messages: list[dict[str, Any]] = []
        self.identifies: list[dict[str, Any]] = []
        #: IDENTIFYs refused for their shard, with the close code sent.
        self.refused_identifies: list[tuple[dict[str, Any], int]] = []
        #: Opcode 4s sent on a shard that does not own the guild: Discord ignores them.
        self.misrouted_voice_states: list[dict[str, Any]] = []
        self.voice_servers: list[VoiceServer] = []
        self.current_voice: dict[int, VoiceServer] = {}
        self.audio: dict[int, ReceivedAudio] = {}
        #: What the bot sent while suppressed on a Stage: received, but nobody heard it.
        self.unheard: dict[int, ReceivedAudio] = {}
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{rest.PREFIX}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    async def start(self) -> None:
        self.certificate = await asyncio.to_thread(make_certificate, self.cert_dir)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway", self.gateway.handle)
        app.router.add_route("*", "/{tail:.*}", self.rest.handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    @property
    def listeners(self) -> dict[int, Listener]:
        """The first guild's members' voice clients, by member."""
        guild_id = self.world.guild_id
        return {user: client for (guild, user), client in self.clients.items() if guild == guild_id}

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.gateway.close_all()
        for listener in self.clients.values():
            await listener.close()
        for server in self.voice_servers:
            await server.stop()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def wait_for(self, predicate: Any, within: float = 10.0) -> Any:
        """Wait until `predicate()` is truthy (re-checked whenever anything is recorded)."""
        return await self.changes.wait_for(predicate, within)

    def add_guild(self, guild_id: int) -> World:
        """Another guild the bot is in (before it connects: it is sent in READY and
        GUILD_CREATE), with channels and a bot role of its own and the same members. Pick
        `guild_id` for the shard it should land on: `(guild_id >> 22) % shard_count`."""
        world = World(
            guild_id=guild_id,
            text_channel_id=snowflake(),
            voice_channel_id=snowflake(),
            stage_channel_id=snowflake(),
            bot_role_id=snowflake(),
        )
        self.worlds[guild_id] = world
        return world

    def guild(self, guild_id: int | None = None) -> World:
        """A guild by id (the first one when None)."""
        return self.world if guild_id is None else self.worlds[guild_id]

    def world_of_channel(self, channel_id: int) -> World | None:
        """The guild a channel is in (DM channels live in the first guild's world)."""
        return next((w for w in self.worlds.values() if w.channel_exists(channel_id)), None)

    def audio_for(self, guild_id: int) -> ReceivedAudio:
        """What listeners heard from the bot: never what it sent while suppressed."""
        return self.audio.setdefault(guild_id, ReceivedAudio())

    def unheard_audio_for(self, guild_id: int) -> ReceivedAudio:
        """What the bot sent while suppressed on a Stage (in the audience, not a speaker)."""
        return self.unheard.setdefault(guild_id, ReceivedAudio())

    # -- voice, Discord's side ------------------------------------------------------------

    async def _voice_server(self, guild_id: int) -> VoiceServer:
        server = self.current_voice.get(guild_id)
        if server is None:
            assert self.certificate is not None
            server = VoiceServer(self, self.certificate)
            await server.start()
            self.voice_servers.append(server)
            self.current_voice[guild_id] = server
        return server

    async def voice_state_from_bot(self, session: GatewaySession, data: dict[str, Any]) -> None:
        """Opcode 4: the bot joins, moves or leaves; Discord answers with its voice state and,
        when joining, where its voice server is."""
        guild_id = int(data.get("guild_id") or 0)
        world = self.worlds.get(guild_id)
        if world is None:
            return
        if not session.owns(guild_id):
            # Guild payloads belong on the guild's shard. Discord's docs do not say what
            # happens to one sent on another; its answers could only go to the owning shard,
            # which never asked, so here nothing happens and the bot never hears back.
            self.misrouted_voice_states.append(data)
            return
        raw = data.get("channel_id")
        channel_id = int(raw) if raw else None
        if channel_id is not None and channel_id not in world.voice_channels:
            return
        state = world.set_voice(BOT_ID, channel_id, session.session_id)
        state.self_deaf = bool(data.get("self_deaf"))
        state.self_mute = bool(data.get("self_mute"))
        await session.dispatch("VOICE_STATE_UPDATE", state.payload(guild_id, world.bot))
        server = await self._voice_server(guild_id)
        server.revoke(guild_id)
        if channel_id is None:
            return
        grant = server.grant(guild_id, BOT_ID, session.session_id)
        await session.dispatch(
            "VOICE_SERVER_UPDATE",
            {"token": grant.token, "guild_id": str(guild_id), "endpoint": server.endpoint},
        )

    async def move_voice_server(
        self,
        guild_id: int,
        *,
        close_code: int | None = 4006,
        close_after: float = 0.5,
        identify_delay: float = 0.0,
    ) -> VoiceServer:
        """Move the guild's voice to a new server, as Discord does when one is drained: a new
        VOICE_SERVER_UPDATE, then, if the bot has not left the old one, the old one closes."""
        old = self.current_voice.pop(guild_id)
        new = await self._voice_server(guild_id)
        new.identify_delay = identify_delay
        old.revoke(guild_id)
        for listener in list(old.listeners):  # Every client of the call moves with it.
            await old.remove_listener(listener)
            await new.add_listener(listener)
        state = self.guild(guild_id).voice_states[BOT_ID]
        grant = new.grant(guild_id, BOT_ID, state.session_id)
        await self.gateway.dispatch(
            "VOICE_SERVER_UPDATE",
            {"token": grant.token, "guild_id": str(guild_id), "endpoint": new.endpoint},
            guild_id,
        )
        if close_code is not None:

            async def close_old() -> None:
                await asyncio.sleep(close_after)
                await old.close_guild(guild_id, close_code)

            task = asyncio.create_task(close_old())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return new

    async def member_voice(
        self,
        user_id: int,
        channel_id: int | None,
        *,
        guild_id: int | None = None,
        listen: bool = True,
    ) -> None:
        """A member joins, moves or leaves voice (in the first guild unless `guild_id`);
        under DAVE, with `listen`, their client connects to the voice server too (and,
        without it, they hear nothing)."""
        world = self.guild(guild_id)
        state = world.set_voice(user_id, channel_id, secrets.token_hex(16))
        member = world.members[user_id]
        await self.gateway.dispatch(
            "VOICE_STATE_UPDATE", state.payload(world.guild_id, member), world.guild_id
        )
        await self._member_client(user_id, channel_id if listen else None, world.guild_id)

    async def _member_client(self, user_id: int, channel_id: int | None, guild_id: int) -> None:
        old = self.clients.get((guild_id, user_id))
        if old is not None and old.channel_id == channel_id:
            return  # Already in that call: the client stays connected, as Discord's does.
        self.clients.pop((guild_id, user_id), None)
        if old is not None:
            for server in self.voice_servers:
                await server.remove_listener(old)
            await old.close()
        if channel_id is None or not self.dave_version:
            return
        listener = Listener(
            user_id, channel_id, BOT_ID, on_change=self.changes.notify, latency=self.dave_latency
        )
        self.clients[guild_id, user_id] = listener
        server = await self._voice_server(guild_id)
        await server.add_listener(listener)

    async def invite_to_speak(self, user_id: int, *, guild_id: int | None = None) -> None:
        """A stage moderator makes a member on the Stage a speaker (Modify User Voice State
        with `suppress: false`): their hand goes down and they are heard."""
        world = self.guild(guild_id)
        state = world.voice_states[user_id]
        assert state.channel_id in world.stage_channels, "not on a Stage"
        state.suppress = False
        state.request_to_speak_timestamp = None
        await self.stage.dispatch(state, world)

    def bot_voice_channel(self, guild_id: int | None = None) -> int | None:
        state = self.guild(guild_id).voice_states.get(BOT_ID)
        return state.channel_id if state else None

    # -- interactions and messages --------------------------------------------------------

    def dm_channel(self, user_id: int) -> int:
        """The DM channel between a member and the bot (made on first use)."""
        world = self.world
        channel_id = next((c for c, r in world.dm_channels.items() if r == user_id), None)
        if channel_id is None:
            channel_id = snowflake()
            world.dm_channels[channel_id] = user_id
        return channel_id

    def dm_interaction_payload(
        self, kind: int, data: dict[str, Any], user_id: int
    ) -> dict[str, Any]:
        """An interaction from the member's DMs with the bot: no guild, no member, context 1."""
        channel_id = self.dm_channel(user_id)
        return {
            "id": str(snowflake()),
            "application_id": str(APP_ID),
            "type": kind,
            "token": f"aW50ZXJhY3Rpb24.{secrets.token_urlsafe(24)}",
            "version": 1,
            "channel_id": str(channel_id),
            "channel": self.world.channel_payload(channel_id),
            "user": self.world.members[user_id].user(),
            "app_permissions": str(self.world.member_permissions(BOT_ID)),
            "locale": self.world.members[user_id].locale,
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(user_id)},
            "context": 1,
            "attachment_size_limit": self.upload_limit,
            "data": data,
        }

    def interaction_payload(
        self, kind: int, data: dict[str, Any], user_id: int, channel_id: int
    ) -> dict[str, Any]:
        interaction_id = snowflake()
        world = self.world_of_channel(channel_id) or self.world
        member = world.members[user_id].payload()
        # Both resolved in the channel (roles and its overwrites), as Discord sends them.
        member["permissions"] = str(world.channel_permissions(user_id, channel_id))
        return {
            "id": str(interaction_id),
            "application_id": str(APP_ID),
            "type": kind,
            "token": f"aW50ZXJhY3Rpb24.{secrets.token_urlsafe(24)}",
            "version": 1,
            "guild_id": str(world.guild_id),
            "guild": {
                "id": str(world.guild_id),
                "locale": world.preferred_locale,
                "features": [],
            },
            "channel_id": str(channel_id),
            "channel": world.channel_payload(channel_id),
            "member": member,
            "app_permissions": str(world.channel_permissions(BOT_ID, channel_id)),
            "locale": world.members[user_id].locale,
            "guild_locale": world.preferred_locale,
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(world.guild_id)},
            "context": 0,
            "attachment_size_limit": self.upload_limit,
            "data": data,
        }

    async def interact(
        self,
        name: str,
        *,
        user_id: int,
        subcommand: str | None = None,
        channel_id: int | None = None,
        guild_id: int | None = None,
        focused: str | None = None,
        dm: bool = False,
        **options: Any,
    ) -> Interaction:
        """A member runs a slash command (or types in one of its options, with `focused`) in
        `channel_id`, by default the text channel of the guild `guild_id` (else the first);
        `dm` sends it from their DMs with the bot instead of the server."""
        world = self.guild(guild_id)
        if channel_id is None:
            channel_id = world.text_channel_id
        else:
            world = self.world_of_channel(channel_id) or world
        given = []
        resolved: dict[str, dict[str, Any]] = {}
        for option, value in options.items():
            if isinstance(value, RoleChoice):
                # A client offers only the server's roles: anything else is a broken test.
                if value.role_id not in world.role_names:
                    raise ValueError(f"no role {value.role_id} in the emulated server")
                role = world.role_payload(value.role_id)
                resolved.setdefault("roles", {})[role["id"]] = role
                entry = {"name": option, "type": ROLE_OPTION, "value": role["id"]}
            else:
                entry = {"name": option, "type": _OPTION_TYPES[type(value)], "value": value}
            if option == focused:
                entry["focused"] = True
            given.append(entry)
        if subcommand is not None:
            given = [{"name": subcommand, "type": 1, "options": given}]
        command = self._command(name)
        data: dict[str, Any] = {
            "id": command["id"] if command else str(snowflake()),
            "name": name,
            "type": 1,
            "options": given,
        }
        if resolved:
            data["resolved"] = resolved
        kind = 4 if focused else 2
        if dm:
            payload = self.dm_interaction_payload(kind, data, user_id)
        else:
            data["guild_id"] = str(world.guild_id)
            payload = self.interaction_payload(kind, data, user_id, channel_id)
        interaction = Interaction(
            int(payload["id"]), payload["token"], kind, self.clock.now(), payload
        )
        self.interactions[interaction.id] = interaction
        await self.gateway.dispatch("INTERACTION_CREATE", payload, None if dm else world.guild_id)
        return interaction

    async def interact_with_message(
        self, name: str, message: dict[str, Any], *, user_id: int
    ) -> Interaction:
        """A member picks a message command (Apps → `name`) on a message in the server: type 2
        with `data.type` 3, the message as `target_id` and in `data.resolved.messages`."""
        command = self._command(name)
        if command is None or command.get("type") != 3:
            raise ValueError(f"the bot synced no message command named {name!r}")
        target = {key: value for key, value in message.items() if key != "member"}
        data = {
            "id": command["id"],
            "name": name,
            "type": 3,
            "target_id": message["id"],
            "resolved": {"messages": {message["id"]: target}},
            "guild_id": message["guild_id"],
        }
        payload = self.interaction_payload(2, data, user_id, int(message["channel_id"]))
        interaction = Interaction(
            int(payload["id"]), payload["token"], 2, self.clock.now(), payload
        )
        self.interactions[interaction.id] = interaction
        await self.gateway.dispatch("INTERACTION_CREATE", payload, int(message["guild_id"]))
        return interaction

    async def interact_with_component(
        self,
        message: dict[str, Any],
        custom_id: str,
        *,
        user_id: int,
        values: list[str] | None = None,
    ) -> Interaction:
        """A member presses a button, or picks `values` in a select menu, on one of the bot's
        messages: type 3 with the component's custom id and type and the message, as Discord
        sends it. Only options the menu offers can be picked, as in a client."""
        component = find_component(message, custom_id)
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component["type"]}
        if values is not None:
            offered = {option["value"] for option in component.get("options") or []}
            if component["type"] != 3 or not set(values) <= offered:
                raise ValueError(f"{custom_id!r} offers no {values!r}")
            data["values"] = values
        channel_id = int(message["channel_id"])
        payload = self.interaction_payload(3, data, user_id, channel_id)
        payload["message"] = message
        interaction = Interaction(
            int(payload["id"]), payload["token"], 3, self.clock.now(), payload
        )
        self.interactions[interaction.id] = interaction
        guild_id = message.get("guild_id")
        await self.gateway.dispatch(
            "INTERACTION_CREATE", payload, int(guild_id) if guild_id else None
        )
        return interaction

    def _command(self, name: str) -> dict[str, Any] | None:
        for commands in self.commands.values():
            for command in commands:
                if command.get("name") == name:
                    return command
        return None

    def requests_for(self, interaction: Interaction) -> list[RestRequest]:
        """The REST calls made to answer one interaction, in order."""
        keys = (f"/{interaction.id}/", f"/{interaction.token}/", f"/{interaction.token}")
        return [r for r in self.requests if any(k in r.path + "/" for k in keys)]

    def _message(
        self, content: str, author_id: int, world: World, channel_id: int
    ) -> dict[str, Any]:
        member = world.members[author_id]
        partial = member.payload()
        partial.pop("user")
        message = new_message(channel_id, member.user(), content)
        message.update(guild_id=str(world.guild_id), member=partial, nonce=str(snowflake()))
        return message

    async def send_message(
        self,
        content: str,
        *,
        author_id: int,
        channel_id: int | None = None,
        guild_id: int | None = None,
    ) -> dict[str, Any]:
        """A member posts in a channel (MESSAGE_CREATE): `channel_id`, or the text channel of
        the guild `guild_id` (else the first)."""
        world = self.guild(guild_id)
        if channel_id is None:
            channel_id = world.text_channel_id
        else:
            world = self.world_of_channel(channel_id) or world
        message = self._message(content, author_id, world, channel_id)
        await self.gateway.dispatch("MESSAGE_CREATE", message, world.guild_id)
        return message

    async def edit_message(self, message: dict[str, Any], content: str) -> dict[str, Any]:
        edited = {**message, "content": content, "edited_timestamp": timestamp()}
        await self.gateway.dispatch("MESSAGE_UPDATE", edited, int(message["guild_id"]))
        return edited

    async def delete_message(self, message: dict[str, Any]) -> None:
        await self.gateway.dispatch(
            "MESSAGE_DELETE",
            {
                "id": message["id"],
                "channel_id": message["channel_id"],
                "guild_id": message["guild_id"],
            },
            int(message["guild_id"]),
        )


__all__ = ["Emulator", "RoleChoice", "contextlib"]
