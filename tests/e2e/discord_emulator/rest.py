"""REST API v10: the routes the bot calls, answered and refused the way Discord does.

Interaction callbacks and interaction webhooks need no `Authorization` header (their token is
in the path), as on Discord; every other route needs `Bot <token>`.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from tests.e2e.discord_emulator.messages import (
    EPHEMERAL,
    LOADING,
    DiscordError,
    build_message,
    check_channel_post,
    check_message,
    check_voice_message,
    invalid,
    resolve_deferral,
    resolve_reference,
)
from tests.e2e.discord_emulator.records import Interaction, RestRequest, Upload
from tests.e2e.discord_emulator.state import (
    APP_ID,
    BOT_ID,
    GATEWAY_MESSAGE_CONTENT,
    GATEWAY_MESSAGE_CONTENT_LIMITED,
    INTENT_MESSAGE_CONTENT,
    snowflake,
)

if TYPE_CHECKING:
    from tests.e2e.discord_emulator.server import Emulator

PREFIX = "/api/v10"
MAX_CHOICES = 25
#: An interaction must be answered within this many seconds.
CALLBACK_DEADLINE = 3.0
#: Its token (follow-ups, @original) works for this long.
TOKEN_TTL = 15 * 60.0
_CALLBACK_TYPES = {1, 4, 5, 6, 7, 8, 9, 10, 12}

Handler = Callable[[web.Request, RestRequest], Awaitable[web.Response]]


def json_response(body: Any, status: int = 200) -> web.Response:
    # discord.py compares the content type exactly: no "; charset=utf-8".
    response = web.Response(status=status, body=json.dumps(body).encode())
    response.headers["Content-Type"] = "application/json"
    return response


def _rate_limit_headers(bucket: str) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": "50",
        "X-RateLimit-Remaining": "49",
        "X-RateLimit-Reset": f"{time.time() + 1:.3f}",
        "X-RateLimit-Reset-After": "1.000",
        "X-RateLimit-Bucket": bucket,
        "X-RateLimit-Scope": "user",
    }


class RestApi:
    def __init__(self, emulator: Emulator) -> None:
        self.emu = emulator
        # (method, pattern, needs bot auth, handler)
        self._routes: list[tuple[str, re.Pattern[str], bool, Handler]] = []
        add = self.add
        add("GET", r"/users/@me", True, self._me)
        add("GET", r"/users/(?P<user>\d+)", True, self._user)
        add("GET", r"/gateway/bot", True, self._gateway_bot)
        add("GET", r"/gateway", False, self._gateway_bot)
        add("GET", r"/oauth2/applications/@me", True, self._application)
        add("GET", r"/applications/@me", True, self._application)
        add("PUT", r"/applications/(?P<app>\d+)/commands", True, self._sync)
        add("PUT", r"/applications/(?P<app>\d+)/guilds/(?P<guild>\d+)/commands", True, self._sync)
        add("POST", r"/interactions/(?P<id>\d+)/(?P<token>[^/]+)/callback", False, self._callback)
        hook = r"/webhooks/(?P<app>\d+)/(?P<token>[^/]+)"
        add("GET", hook + r"/messages/(?P<msg>@original|\d+)", False, self._get_message)
        add("PATCH", hook + r"/messages/(?P<msg>@original|\d+)", False, self._edit_message)
        add("DELETE", hook + r"/messages/(?P<msg>@original|\d+)", False, self._delete_message)
        add("POST", hook, False, self._followup)
        add("POST", r"/channels/(?P<channel>\d+)/messages", True, self._channel_message)
        add("GET", r"/channels/(?P<channel>\d+)", True, self._channel)
        add("POST", r"/users/@me/channels", True, self._dm)

    def add(self, method: str, pattern: str, auth: bool, handler: Handler) -> None:
        self._routes.append((method, re.compile(pattern + "$"), auth, handler))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path.removeprefix(PREFIX)
        record = RestRequest(request.method, path, dict(request.query), dict(request.headers))
        self.emu.requests.append(record)
        try:
            await self._read_body(request, record)
            response = await self._dispatch(request, path, record)
        except DiscordError as exc:
            response = json_response(exc.body, exc.status)
        record.status = response.status
        if response.body is not None and response.content_type == "application/json":
            assert isinstance(response.body, bytes)
            record.response = json.loads(response.body)
        response.headers.update(_rate_limit_headers(f"{request.method}:{path.split('/')[1]}"))
        self.emu.changes.notify()
        return response

    async def _dispatch(self, request: web.Request, path: str, record: RestRequest) -> web.Response:
        if not request.path.startswith(PREFIX + "/"):
            raise DiscordError(404, 0, "404: Not Found")
        for method, pattern, auth, handler in self._routes:
            match = pattern.match(path)
            if match is None or method != request.method:
                continue
            if auth:
                self._check_auth(request)
            request["match"] = match.groupdict()
            return await handler(request, record)
        raise DiscordError(404, 0, "404: Not Found")

    def _check_auth(self, request: web.Request) -> None:
        if request.headers.get("Authorization") != f"Bot {self.emu.token}":
            raise DiscordError(401, 0, "401: Unauthorized")

    async def _read_body(self, request: web.Request, record: RestRequest) -> None:
        if not request.body_exists:
            return
        content_type = request.content_type
        if content_type == "multipart/form-data":
            reader = await request.multipart()
            while True:
                part = await reader.next()
                if part is None:
                    break
                if not isinstance(part, aiohttp.BodyPartReader):
                    raise DiscordError(400, 50109, "Nested multipart is not supported")
                data = await part.read()
                name = part.name or ""
                if name == "payload_json":
                    record.json = json.loads(data)
                else:
                    filename = getattr(part, "filename", None) or name
                    ctype = part.headers.get("Content-Type")
                    record.files.append(Upload(name, filename, bytes(data), ctype))
        elif content_type == "application/json":
            try:
                record.json = json.loads(await request.read())
            except ValueError:
                raise DiscordError(400, 50109, "The request body contains invalid JSON.") from None

    # -- routes ---------------------------------------------------------------------------

    async def _me(self, request: web.Request, record: RestRequest) -> web.Response:
        user = self.emu.world.bot.user()
        user.update(verified=True, mfa_enabled=False, flags=0, email=None)
        return json_response(user)

    async def _user(self, request: web.Request, record: RestRequest) -> web.Response:
        member = self.emu.world.members.get(int(request["match"]["user"]))
        if member is None:
            raise DiscordError(404, 10013, "Unknown User")
        return json_response(member.user())

    async def _gateway_bot(self, request: web.Request, record: RestRequest) -> web.Response:
        return json_response(
            {
                "url": self.emu.gateway_url,
                "shards": self.emu.shards,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 999,
                    "reset_after": 86_400_000,
                    "max_concurrency": 1,
                },
            }
        )

    async def _application(self, request: web.Request, record: RestRequest) -> web.Response:
        application = self.emu.world.application()
        if not self.emu.allowed_privileged_intents & INTENT_MESSAGE_CONTENT:
            # The portal's toggle is off: neither GATEWAY_MESSAGE_CONTENT flag is set.
            application["flags"] &= ~(GATEWAY_MESSAGE_CONTENT | GATEWAY_MESSAGE_CONTENT_LIMITED)
        return json_response(application)

    async def _sync(self, request: web.Request, record: RestRequest) -> web.Response:
        if int(request["match"]["app"]) != APP_ID:
            raise DiscordError(403, 50001, "Missing Access")
        commands = record.json
        if not isinstance(commands, list):
            raise invalid("_root", "BASE_TYPE_ARRAY", "Must be an array.")
        if len(commands) > 100:
            raise invalid("_root", "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length.")
        guild = request["match"].get("guild")
        answer = []
        for command in commands:
            name = command.get("name", "")
            chat_input = command.get("type", 1) == 1  # Menu commands may have spaces, capitals.
            valid = re.fullmatch(r"[-_\w]{1,32}", name) and name == name.lower()
            if not 1 <= len(name) <= 32 or (chat_input and not valid):
                raise invalid("name", "APPLICATION_COMMAND_INVALID_NAME", "Invalid name")
            synced = {
                "id": str(snowflake()),
                "application_id": str(APP_ID),
                "version": str(snowflake()),
                "default_member_permissions": None,
                "nsfw": False,
                **command,
            }
            synced.setdefault("type", 1)
            synced.setdefault("description", "")
            if guild is not None:
                synced["guild_id"] = guild
            answer.append(synced)
        self.emu.commands[int(guild) if guild else None] = answer
        return json_response(answer)

    def _interaction(self, interaction_id: int | None, token: str) -> Interaction:
        for interaction in self.emu.interactions.values():
            if interaction.token == token and interaction_id in (None, interaction.id):
                return interaction
        if interaction_id is None:
            raise DiscordError(401, 50027, "Invalid Webhook Token")
        raise DiscordError(404, 10062, "Unknown interaction")

    async def _callback(self, request: web.Request, record: RestRequest) -> web.Response:
        match = request["match"]
        interaction = self._interaction(int(match["id"]), match["token"])
        if self.emu.clock.now() - interaction.created > CALLBACK_DEADLINE:
            raise DiscordError(404, 10062, "Unknown interaction")
        if interaction.callback_type is not None:
            raise DiscordError(400, 40060, "Interaction has already been acknowledged.")
        body = record.json if isinstance(record.json, dict) else {}
        kind = body.get("type")
        if kind not in _CALLBACK_TYPES:
            raise invalid("type", "BASE_TYPE_CHOICES", f"Value must be one of {_CALLBACK_TYPES}.")
        data = body.get("data") or {}
        if kind == 8:
            if interaction.kind != 4:
                raise DiscordError(400, 50035, "Interaction is not an autocomplete interaction")
            if len(data.get("choices") or []) > MAX_CHOICES:
                raise invalid(
                    "data.choices", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."
                )
        elif kind in (6, 7) and interaction.kind != 3:
            raise DiscordError(400, 40043, "Interaction is not a component interaction")
        elif kind in (4, 7):
            wrapped = RestRequest(record.method, record.path, {}, {}, data, record.files)
            check_message(wrapped, creating=kind == 4, upload_limit=self.emu.upload_limit)
        interaction.callback_type = kind
        interaction.answered_at = self.emu.clock.now()
        channel_id = int(interaction.payload.get("channel_id") or 0)
        message = None
        if kind in (4, 5):
            wrapped = RestRequest(record.method, record.path, {}, {}, data, record.files)
            message = build_message(self.emu, wrapped, channel_id, interaction=interaction)
            message["flags"] = (data.get("flags") or 0) | (LOADING if kind == 5 else 0)
            interaction.original = message
        self.emu.changes.notify()
        if request.query.get("with_response") not in ("1", "true", "True"):
            return web.Response(status=204)
        resource: dict[str, Any] = {"type": kind}
        if message is not None and kind == 4:
            resource["message"] = message
        return json_response(
            {
                "interaction": {
                    "id": str(interaction.id),
                    "type": interaction.kind,
                    "response_message_id": message["id"] if message else None,
                    "response_message_loading": kind == 5,
                    "response_message_ephemeral": bool((data.get("flags") or 0) & EPHEMERAL),
                },
                "resource": resource,
            }
        )

    def _webhook_interaction(self, request: web.Request) -> Interaction:
        match = request["match"]
        if int(match["app"]) != APP_ID:
            raise DiscordError(404, 10015, "Unknown Webhook")
        interaction = self._interaction(None, match["token"])
        if self.emu.clock.now() - interaction.created > self.emu.token_ttl:
            raise DiscordError(401, 50027, "Invalid Webhook Token")
        return interaction

    def _find(self, interaction: Interaction, message_id: str) -> dict[str, Any]:
        if message_id == "@original":
            if interaction.original is None or interaction.deleted:
                raise DiscordError(404, 10008, "Unknown Message")
            return interaction.original
        for message in interaction.followups:
            if message["id"] == message_id:
                return message
        raise DiscordError(404, 10008, "Unknown Message")

    async def _get_message(self, request: web.Request, record: RestRequest) -> web.Response:
        interaction = self._webhook_interaction(request)
        return json_response(self._find(interaction, request["match"]["msg"]))

    async def _edit_message(self, request: web.Request, record: RestRequest) -> web.Response:
        interaction = self._webhook_interaction(request)
        old = self._find(interaction, request["match"]["msg"])
        check_message(record, creating=False, upload_limit=self.emu.upload_limit)
        channel_id = int(old["channel_id"])
        message = build_message(self.emu, record, channel_id, old=old, interaction=interaction)
        if request["match"]["msg"] == "@original":
            interaction.original = message
        else:
            index = next(i for i, m in enumerate(interaction.followups) if m["id"] == old["id"])
            interaction.followups[index] = message
        return json_response(message)

    async def _delete_message(self, request: web.Request, record: RestRequest) -> web.Response:
        interaction = self._webhook_interaction(request)
        message = self._find(interaction, request["match"]["msg"])
        if request["match"]["msg"] == "@original":
            interaction.deleted = True
        else:
            interaction.followups.remove(message)
        return web.Response(status=204)

    async def _followup(self, request: web.Request, record: RestRequest) -> web.Response:
        interaction = self._webhook_interaction(request)
        if interaction.callback_type is None:
            raise DiscordError(404, 10015, "Unknown Webhook")
        check_message(record, creating=True, upload_limit=self.emu.upload_limit)
        message = resolve_deferral(self.emu, record, interaction)
        if message is None:
            channel_id = int(interaction.payload.get("channel_id") or 0)
            message = build_message(self.emu, record, channel_id, interaction=interaction)
            interaction.followups.append(message)
        if request.query.get("wait") in ("1", "true", "True"):
            return json_response(message)
        return web.Response(status=204)

    async def _channel_message(self, request: web.Request, record: RestRequest) -> web.Response:
        channel_id = int(request["match"]["channel"])
        world = self.emu.world_of_channel(channel_id)
        if world is None:
            raise DiscordError(404, 10003, "Unknown Channel")
        check_voice_message(record)
        check_message(record, creating=True, upload_limit=self.emu.upload_limit)
        check_channel_post(self.emu, record, channel_id)
        replying_to = resolve_reference(self.emu, record, channel_id)
        message = build_message(self.emu, record, channel_id, replying_to=replying_to)
        if channel_id not in world.dm_channels:
            message["guild_id"] = str(world.guild_id)
        self.emu.channel_messages.append(message)
        return json_response(message)

    async def _channel(self, request: web.Request, record: RestRequest) -> web.Response:
        channel_id = int(request["match"]["channel"])
        world = self.emu.world_of_channel(channel_id)
        channel = world.channel_payload(channel_id) if world is not None else None
        if channel is None:
            raise DiscordError(404, 10003, "Unknown Channel")
        return json_response(channel)

    async def _dm(self, request: web.Request, record: RestRequest) -> web.Response:
        body = record.json if isinstance(record.json, dict) else {}
        recipient = int(body.get("recipient_id") or 0)
        if recipient not in self.emu.world.members or recipient == BOT_ID:
            raise DiscordError(400, 50007, "Cannot send messages to this user")
        world = self.emu.world
        channel_id = next((c for c, r in world.dm_channels.items() if r == recipient), None)
        if channel_id is None:
            channel_id = snowflake()
            world.dm_channels[channel_id] = recipient
        channel = world.channel_payload(channel_id)
        return json_response(channel)
