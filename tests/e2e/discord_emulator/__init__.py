"""An emulator of the parts of Discord a bot touches, on 127.0.0.1, for end-to-end tests.

Emulated:
- REST API v10 (`rest`): login (`/users/@me`), `/gateway/bot`, application info (its
  Message Content flag follows `allowed_privileged_intents`, as the portal's toggle), command
  sync (global and guild), interaction callbacks (types 1, 4-10, 12), interaction webhooks
  (follow-ups, GET/PATCH/DELETE `@original` and follow-up messages, JSON or multipart with
  files), channel messages (replies included) and DMs, and Stage speakers (`stage`: PATCH
  `/guilds/{guild}/voice-states/@me`). Every request is recorded with its JSON and uploads.
- Permissions (`state`): role permissions and channel overwrites, computed as Discord does,
  and sent resolved in the interaction's channel (`member.permissions`, `app_permissions`).
- Messages (`messages`): a follow-up while a deferred answer is still "thinking" becomes that
  answer, keeping the deferral's visibility (private stays private), as on Discord; after the
  answer's first edit, follow-ups are messages of their own.
- Gateway (`gateway`): HELLO, IDENTIFY, READY, GUILD_CREATE of one guild (text, voice and
  stage channels, roles, members, voice states), heartbeats, RESUME, zlib-stream transport
  compression, opcode 4 answered with VOICE_STATE_UPDATE and VOICE_SERVER_UPDATE, and helpers
  to dispatch INTERACTION_CREATE (slash commands, with role options resolved, and message
  commands on a message), MESSAGE_CREATE/UPDATE/DELETE and members' voice states.
- Sharding (`gateway`): several guilds (`Emulator.add_guild`), `GET /gateway/bot` recommending
  `shards`, IDENTIFY's `[shard_id, shard_count]`, and each guild's events (READY's guild list,
  GUILD_CREATE, messages, interactions, voice states) sent only to the shard
  `(guild_id >> 22) % shard_count`, DMs to shard 0; an opcode 4 sent on a shard that does not
  own the guild is ignored.
- Roles (`state`): roles an admin made, given to members, sent in GUILD_CREATE.
- Voice (`voice`, `rtp`): the v8 voice gateway over TLS (a throwaway certificate, `certs`),
  UDP IP discovery with a few milliseconds of network delay, transport-encrypted RTP
  (aead_xchacha20_poly1305_rtpsize; AES-GCM only where libsodium offers it), decrypted and
  decoded to PCM with PyAV; forced voice server changes and slow handshakes. On a Stage a
  member joins suppressed (audience): what the bot sends then is kept apart (`unheard`), not
  counted as heard.

Refused as Discord refuses them, with its error JSON (`code`, `message`, `errors`): a missing
or wrong `Authorization: Bot <token>` (401), unknown routes (404), content over 2,000
characters and more than 25 autocomplete choices (400/50035), empty messages (50006), a
callback after 3 s (404/10062), a second callback (400/40060), interaction webhooks after the
token's 15 minutes (401/50027, ttl injectable), uploads over the limit (413/40005, 10 MiB by
default), the bot's channel posts its permissions there do not allow (View Channel 50001;
Send Messages, Attach Files, Send Voice Messages, Read Message History to reply: 403/50013), a
reply to a message nobody else can see or that is not there (400/50035, or posted as no
reply with `fail_if_not_exists: false`), becoming a Stage speaker without Mute Members or
raising a hand without Request to Speak (403/50013), a voice-state PATCH for a channel that
is not the Stage the bot is in (400/50035) or while in no voice channel (404/10065); on the
gateway: a bad token (4004), privileged intents not allowed (4014), a malformed or out of range
shard or a shard count unlike the connected shards' (4010), too few shards (4011, with
`required_shards`), a second IDENTIFY for a connected shard (4005: Discord documents no code for
it, see `gateway`).

- DAVE (`dave`, `mls`, `listeners`), Discord's end-to-end encrypted voice, protocol 1 by
  default (`dave_version = 0` for a call without it): a client without DAVE is refused
  (4017); the voice server is the MLS delivery service and external sender (key packages
  checked, Add/Remove proposals signed, first commit of an epoch announced, welcomes,
  transitions, op 31 recovery); members in voice are simulated clients with their own davey
  session, decrypting what the bot sends. Not emulated: calls mixing DAVE and non-DAVE
  clients, the sole-member reset, resuming under DAVE.

Not emulated: rate limits are announced (`X-RateLimit-*` headers with plenty of room) but
never hit.
"""

from __future__ import annotations

from tests.e2e.discord_emulator.records import Interaction, RestRequest, Upload
from tests.e2e.discord_emulator.rtp import ReceivedAudio
from tests.e2e.discord_emulator.server import Emulator, RoleChoice

__all__ = ["Emulator", "Interaction", "ReceivedAudio", "RestRequest", "RoleChoice", "Upload"]
