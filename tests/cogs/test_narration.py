"""The narration cog through spec'd Discord objects and a real SQLite storage."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any
from unittest.mock import create_autospec

import discord
import pytest

from bot.config import Settings
from bot.errors import BotError, NarrationDisabledError, QueueFullError
from bot.playback.player import GuildPlayer, Utterance
from bot.speech.access import Requester
from bot.speech.voices import voice_for_user
from bot.storage import SQLiteStorage
from bot.synthesis.scheduler import Ticket
from bot.synthesis.service import SpeechService
from bot.synthesis.stream import SpeechStream
from cogs._shared import facts_from_message
from cogs.narration import Narration
from tests.helpers import make_member, make_message, mock_bot, mock_interaction

GUILD, TEXT, OTHER_TEXT = 10, 20, 21
ALICE = 1001


@pytest.fixture
async def storage(tmp_path: Any) -> AsyncIterator[SQLiteStorage]:
    store = SQLiteStorage(tmp_path / "bot.db")
    await store.connect()
    yield store
    await store.close()


class Scene:
    def __init__(self, bot: Any) -> None:
        self.bot = bot
        self.guild = create_autospec(discord.Guild, instance=True)
        self.guild.id = GUILD
        self.voice_channel = create_autospec(discord.VoiceChannel, instance=True)
        self.voice_channel.members, self.voice_channel.user_limit = [], 0
        bot.playback.take_the_stage.return_value = None
        self.player = create_autospec(GuildPlayer, instance=True)
        self.player.held = False  # A voice channel, or a Stage where the bot is a speaker.
        bot.playback.connected_channel.return_value = self.voice_channel
        bot.playback.player.return_value = self.player
        self.stream = create_autospec(SpeechStream, instance=True)
        # The pipeline is real up to its last step: what would be queued is recorded here.
        self.queued = create_autospec(bot.services.speech.stream, side_effect=self._queue)
        bot.services.speech.stream = self.queued

    def _queue(self, requester: Any, requests: Any, **_: Any) -> Any:
        self.stream.requests = list(requests)
        return self.stream

    def message(
        self, content: str, *, author_id: int = ALICE, channel_id: int = TEXT, **extra: Any
    ) -> Any:
        channel = create_autospec(discord.TextChannel, instance=True)
        channel.id = channel_id
        voice = create_autospec(discord.VoiceState, instance=True)
        voice.channel = extra.pop("voice_channel", self.voice_channel)
        author = make_member(
            author_id,
            bot=extra.pop("bot", False),
            display_name=extra.pop("name", "Alice"),
            voice=voice,
            guild_permissions=extra.pop("permissions", discord.Permissions.none()),
        )
        silent = discord.MessageFlags(suppress_notifications=extra.pop("silent", False))
        return make_message(
            content,
            id=extra.pop("message_id", 555),
            guild=self.guild,
            channel=channel,
            author=author,
            flags=silent,
            **extra,
        )

    def spoken(self) -> list[str]:
        return [request.text for c in self.queued.call_args_list for request in c.args[1]]


@pytest.fixture
async def scene(make_settings: Callable[..., Settings], storage: SQLiteStorage) -> Scene:
    bot = mock_bot(make_settings())
    bot.services.storage = storage
    # The pipeline is real: defaults, rules and quota read the real database.
    bot.services.speech = SpeechService(bot.settings, bot.services.scheduler, storage=storage)
    await storage.update_guild(GUILD, narration_channel_id=TEXT)
    return Scene(bot)


async def test_a_message_is_read_in_the_members_stable_voice(scene: Scene) -> None:
    cog = Narration(scene.bot)
    await cog.on_message(scene.message("hello everyone"))
    assert scene.spoken() == ["Alice said: hello everyone"]
    requester, (request,) = scene.queued.call_args.args
    assert request.voice == voice_for_user(ALICE).name
    # Narration reads every message: no cooldown, usage under the server.
    assert requester == Requester(ALICE, GUILD, cooldown=0, capped=False)
    (utterance,) = scene.player.enqueue.call_args.args
    assert isinstance(utterance, Utterance)
    assert utterance.user_id == ALICE
    utterance.on_close()  # type: ignore[misc]
    scene.stream.cancel.assert_called_once_with()


async def test_the_members_chosen_voice_and_style_are_used(
    scene: Scene, storage: SQLiteStorage
) -> None:
    await storage.update_member(ALICE, voice="Sulafat", temperature=0.9, style="calm")
    await Narration(scene.bot).on_message(scene.message("hi"))
    ((request,),) = [c.args[1] for c in scene.queued.call_args_list]
    assert (request.voice, request.temperature) == ("Sulafat", 0.9)
    assert request.text == "Say calmly and slowly: Alice said: hi"


@pytest.mark.parametrize(
    "change",
    [
        {"channel_id": OTHER_TEXT},
        {"bot": True},
        {"content": ";not this"},
        {"voice_channel": None},
        {"webhook_id": 99},
        {"content": "   "},
    ],
)
async def test_messages_that_are_not_read(scene: Scene, change: dict[str, Any]) -> None:
    content = change.pop("content", "hello")
    await Narration(scene.bot).on_message(scene.message(content, **change))
    scene.queued.assert_not_called()
    scene.player.enqueue.assert_not_called()


async def test_nothing_is_read_when_the_bot_is_not_in_voice_and_cannot_join(scene: Scene) -> None:
    scene.bot.playback.connected_channel.return_value = None
    scene.bot.playback.join.side_effect = BotError(user_message="I can't connect there.")
    await Narration(scene.bot).on_message(scene.message("hello"))
    scene.queued.assert_not_called()


async def test_members_outside_voice_are_read_when_the_server_allows(
    scene: Scene, storage: SQLiteStorage
) -> None:
    await storage.update_guild(GUILD, narration_voice_only=False)
    await Narration(scene.bot).on_message(scene.message("from afar", voice_channel=None))
    assert scene.spoken() == ["Alice said: from afar"]


async def test_a_full_player_queue_withdraws_the_synthesis(scene: Scene) -> None:
    scene.player.enqueue.side_effect = QueueFullError(per_user=False, limit=50)
    await Narration(scene.bot).on_message(scene.message("one too many"))
    scene.stream.cancel.assert_called_once_with()


async def test_refused_by_the_scheduler_is_skipped_quietly(scene: Scene) -> None:
    scene.queued.side_effect = QueueFullError(per_user=True, limit=3)
    await Narration(scene.bot).on_message(scene.message("spam"))
    scene.player.enqueue.assert_not_called()


def test_facts_carry_names_for_mentions_and_describe_attachments() -> None:
    message = create_autospec(discord.Message, instance=True)
    message.content = "<@5> see <#6> <@&7>"
    user = create_autospec(discord.Member, instance=True)
    user.id, user.display_name = 5, "Bob"
    role = create_autospec(discord.Role, instance=True)
    role.id, role.name = 7, "Mods"
    channel = create_autospec(discord.TextChannel, instance=True)
    channel.id, channel.name = 6, "rules"
    attachment = create_autospec(discord.Attachment, instance=True)
    attachment.content_type, attachment.filename = "image/png", "cat.png"
    message.mentions, message.role_mentions, message.channel_mentions = [user], [role], [channel]
    message.attachments, message.stickers, message.reference = [attachment], [], None
    facts = facts_from_message(message)
    assert (facts.users, facts.roles, facts.channels) == ({5: "Bob"}, {7: "Mods"}, {6: "rules"})
    assert facts.attachments == ["image/png"]


async def test_start_needs_the_intent_and_a_voice_channel(
    scene: Scene, storage: SQLiteStorage
) -> None:
    cog = Narration(scene.bot)
    callback: Any = Narration.start.callback
    scene.bot.intents = discord.Intents(guilds=True)
    with pytest.raises(NarrationDisabledError):
        await callback(cog, mock_interaction(), None)
    scene.bot.intents = discord.Intents(guilds=True, message_content=True)
    interaction = mock_interaction()
    interaction.user.voice = None
    with pytest.raises(Exception, match="Join a voice channel"):
        await callback(cog, interaction, None)


async def test_start_joins_and_remembers_the_channel_stop_forgets_it(
    scene: Scene, storage: SQLiteStorage
) -> None:
    await storage.update_guild(GUILD, narration_channel_id=None)
    cog = Narration(scene.bot)
    scene.bot.intents = discord.Intents(guilds=True, message_content=True)
    interaction = mock_interaction()
    interaction.guild = scene.guild
    interaction.user.voice.channel = scene.voice_channel
    text = create_autospec(discord.TextChannel, instance=True)
    text.id, text.mention = TEXT, f"<#{TEXT}>"
    start: Any = Narration.start.callback
    await start(cog, interaction, text)
    scene.bot.playback.join.assert_awaited_once_with(scene.voice_channel)
    assert (await storage.get_guild(GUILD)).narration_channel_id == TEXT
    assert "Reading <#20> aloud" in interaction.edit_original_response.await_args.kwargs["content"]
    stop: Any = Narration.stop.callback
    await stop(cog, interaction)
    assert (await storage.get_guild(GUILD)).narration_channel_id is None


async def test_server_rules_and_quota_apply_to_narration(
    scene: Scene, storage: SQLiteStorage
) -> None:
    from datetime import UTC, datetime

    from bot.storage import UsageRecord

    await storage.update_guild(GUILD, allow_voice=False)
    await Narration(scene.bot).on_message(scene.message("not allowed"))
    await storage.update_guild(GUILD, allow_voice=True, daily_quota=1)
    await storage.record_usage(UsageRecord(GUILD, ALICE, datetime.now(UTC), 200, 1.0, 2.0, 0.005))
    await Narration(scene.bot).on_message(scene.message("over quota"))
    scene.queued.assert_not_called()
    await storage.update_guild(GUILD, daily_quota=5)
    await Narration(scene.bot).on_message(scene.message("fine now"))
    assert scene.queued.call_count == 1


# -- issue 10, defect 6: narration that follows its messages ---------------------------------


async def test_system_and_silent_messages(scene: Scene, storage: SQLiteStorage) -> None:
    cog = Narration(scene.bot)
    await cog.on_message(scene.message("New thread name", type=discord.MessageType.thread_created))
    scene.queued.assert_not_called()  # Discord's words, not a member's.
    await cog.on_message(scene.message("quietly", silent=True))
    assert scene.spoken() == ["Alice said: quietly"]  # Read unless the server says otherwise.
    await storage.update_guild(GUILD, narration_skip_silent=True)
    await cog.on_message(scene.message("quietly again", silent=True))
    assert scene.spoken() == ["Alice said: quietly"]


async def test_a_message_deleted_before_its_turn_is_withdrawn(scene: Scene) -> None:
    cog = Narration(scene.bot)
    await cog.on_message(scene.message("oops, wrong channel", message_id=777))
    (utterance,) = scene.player.enqueue.call_args.args
    scene.player.withdraw.return_value = True
    await cog.on_raw_message_delete(
        discord.RawMessageDeleteEvent({"id": "777", "channel_id": str(TEXT), "guild_id": "10"})
    )
    scene.player.withdraw.assert_awaited_once_with(utterance)


async def test_a_message_edited_before_its_turn_is_read_as_edited_in_its_place(
    scene: Scene,
) -> None:
    cog = Narration(scene.bot)
    await cog.on_message(scene.message("teh typo", message_id=778))
    (old,) = scene.player.enqueue.call_args.args
    scene.player.find.return_value = old
    scene.player.replace.return_value = True
    edit = create_autospec(discord.RawMessageUpdateEvent, instance=True)
    edit.message_id, edit.guild_id = 778, GUILD
    edit.message = scene.message("teh typo", message_id=778)  # A link preview: same words.
    await cog.on_raw_message_edit(edit)
    scene.player.replace.assert_not_awaited()
    edit.message = scene.message("the fix", message_id=778)
    await cog.on_raw_message_edit(edit)
    assert scene.spoken() == ["Alice said: teh typo", "Alice said: the fix"]
    ((replaced, new),) = [c.args for c in scene.player.replace.await_args_list]
    assert replaced is old
    assert new.source_id == 778
    scene.player.enqueue.assert_called_once()  # Same place in line, not a new one.


async def test_a_refused_message_does_not_use_up_alice_said(
    scene: Scene, storage: SQLiteStorage
) -> None:
    from datetime import UTC, datetime

    from bot.storage import UsageRecord

    await storage.update_guild(GUILD, daily_quota=1)
    await storage.record_usage(UsageRecord(GUILD, ALICE, datetime.now(UTC), 200, 1.0, 2.0, 0.005))
    cog = Narration(scene.bot)
    await cog.on_message(scene.message("refused: over the quota"))
    await storage.update_guild(GUILD, daily_quota=None)
    await cog.on_message(scene.message("heard"))
    assert scene.spoken() == ["Alice said: heard"]


async def test_messages_are_queued_in_the_order_they_were_written(scene: Scene) -> None:
    import asyncio

    gate = asyncio.Event()
    first_call = True

    async def slow_first(requester: Any, requests: Any, **_: Any) -> Any:
        nonlocal first_call
        if first_call:  # The first message's audio is slower (the second is a cache hit).
            first_call = False
            await gate.wait()
        stream = create_autospec(SpeechStream, instance=True)
        stream.requests = list(requests)
        return stream

    scene.queued.side_effect = slow_first
    cog = Narration(scene.bot)
    first = asyncio.create_task(cog.on_message(scene.message("one", message_id=1)))
    second = asyncio.create_task(cog.on_message(scene.message("two", message_id=2)))
    await asyncio.sleep(0.05)
    gate.set()
    await asyncio.gather(first, second)
    order = [c.args[0].source_id for c in scene.player.enqueue.call_args_list]
    assert order == [1, 2]


async def test_a_long_message_under_a_low_server_limit_is_read_from_its_start(
    scene: Scene, storage: SQLiteStorage
) -> None:
    await storage.update_guild(GUILD, max_text_length=60)
    await Narration(scene.bot).on_message(scene.message("word " * 100))
    (spoken,) = scene.spoken()
    assert len(spoken) <= 60
    assert spoken.startswith("Alice said: word")
    assert spoken.endswith("and more")


async def test_messages_not_read_are_announced_once_in_the_channel(scene: Scene) -> None:
    cog = Narration(scene.bot)
    message = scene.message("lost in the reconnect")
    message.channel.send = create_autospec(discord.TextChannel.send)
    await cog.on_message(message)
    (utterance,) = scene.player.enqueue.call_args.args
    await utterance.report("⚠️ I lost the voice connection and could not get it back.")
    await utterance.report("⚠️ I lost the voice connection and could not get it back.")
    message.channel.send.assert_awaited_once()
    (line,) = message.channel.send.await_args.args
    assert line.startswith("📕 Some messages here were not read aloud: I lost the voice")


async def test_a_member_is_announced_by_their_chosen_name_in_the_servers_words(
    scene: Scene, storage: SQLiteStorage
) -> None:
    await storage.update_member(ALICE, spoken_name="Ah-lee-sah")
    await storage.update_guild(GUILD, narration_said="{name} writes")
    await storage.update_guild(GUILD, pronunciations=[("hiya", "hi there")])
    cog = Narration(scene.bot)
    renames = discord.Permissions(change_nickname=True)
    await cog.on_message(scene.message("hiya all", permissions=renames))
    assert scene.spoken() == ["Ah-lee-sah writes: hi there all"]


async def test_a_spoken_name_is_not_said_where_its_owner_may_not_change_their_nickname(
    scene: Scene, storage: SQLiteStorage
) -> None:
    # Set in a server that allows it, the name is stored once for every server; this one
    # denies Change Nickname, so it hears the display name it controls.
    await storage.update_member(ALICE, spoken_name="Bob")
    locked = discord.Permissions(send_messages=True, connect=True, speak=True)
    await Narration(scene.bot).on_message(scene.message("hi", name="Alice", permissions=locked))
    assert scene.spoken() == ["Alice said: hi"]


def idle(scene: Scene) -> None:
    """The bot is in no voice channel; joining puts it in the one asked for."""
    scene.bot.playback.connected_channel.return_value = None

    async def join(channel: Any) -> Any:
        scene.bot.playback.connected_channel.return_value = channel
        return scene.player

    scene.bot.playback.join.side_effect = join


async def test_an_idle_bot_joins_a_member_who_writes_in_the_narration_channel(
    scene: Scene,
) -> None:
    idle(scene)
    cog = Narration(scene.bot)
    await cog.on_message(scene.message("anyone there?"))
    scene.bot.playback.join.assert_awaited_once_with(scene.voice_channel)
    assert scene.spoken() == ["Alice said: anyone there?"]


async def test_a_voice_channels_own_chat_also_brings_the_bot(scene: Scene) -> None:
    idle(scene)
    scene.voice_channel.id = 30
    cog = Narration(scene.bot)
    await cog.on_message(scene.message("from the voice chat", channel_id=30))
    scene.bot.playback.join.assert_awaited_once_with(scene.voice_channel)
    assert scene.spoken() == ["Alice said: from the voice chat"]


@pytest.mark.parametrize(
    "where",
    [
        {"channel_id": OTHER_TEXT},  # Not the narration channel.
        {"voice_channel": None},  # The member is in no voice channel.
        {"bot": True},
        {"content": ";skipped"},
    ],
)
async def test_the_bot_does_not_join_by_itself_otherwise(
    scene: Scene, where: dict[str, Any]
) -> None:
    idle(scene)
    content = where.pop("content", "hello")
    message = scene.message(content, **where)
    if message.author.voice.channel is None:
        message.author.voice = None
    await Narration(scene.bot).on_message(message)
    scene.bot.playback.join.assert_not_awaited()
    assert scene.spoken() == []


async def test_without_a_narration_channel_the_bot_stays_away(
    scene: Scene, storage: SQLiteStorage
) -> None:
    await storage.update_guild(GUILD, narration_channel_id=None)
    idle(scene)
    await Narration(scene.bot).on_message(scene.message("hello"))
    scene.bot.playback.join.assert_not_awaited()


class Line:
    """The player's queue as the cog sees it: enqueue, find, replace, withdraw."""

    def __init__(self, scene: Scene) -> None:
        self.queue: list[Any] = []
        player = scene.player

        def enqueue(utterance: Any) -> int:
            self.queue.append(utterance)
            return len(self.queue)

        player.enqueue.side_effect = enqueue
        player.find.side_effect = lambda source: next(
            (u for u in self.queue if u.source_id == source), None
        )

        async def replace(old: Any, new: Any) -> bool:
            if old not in self.queue:
                return False
            self.queue[self.queue.index(old)] = new
            return True

        async def withdraw(old: Any) -> bool:
            if old not in self.queue:
                return False
            self.queue.remove(old)
            return True

        player.replace.side_effect = replace
        player.withdraw.side_effect = withdraw


def behind(scene: Scene, state: str = "queued") -> Line:
    """Narration is behind: every call made so far still waits in the scheduler's queue."""
    ticket = create_autospec(Ticket, instance=True)
    ticket.state = state
    scene.stream.current = ticket
    scene.stream.total = 1
    return Line(scene)


async def test_when_behind_one_members_messages_share_one_call(scene: Scene) -> None:
    line = behind(scene)
    cog = Narration(scene.bot)
    for n, text in enumerate(["first", "second", "third"]):
        await cog.on_message(scene.message(text, message_id=600 + n))
    await cog.on_message(scene.message("mine", message_id=700, author_id=2002, name="Bob"))
    assert [u.source_id for u in line.queue] == [600, 700]  # Order kept, one place each.
    assert scene.spoken()[-2:] == ["Alice said: first second third", "Bob said: mine"]
    # A message that joins the waiting call never begins a call of its own.
    assert "second" not in scene.spoken()
    assert "third" not in scene.spoken()
    # A message deleted from the merged call is not read; the others still are.
    await cog.on_raw_message_delete(
        discord.RawMessageDeleteEvent({"id": "601", "channel_id": str(TEXT), "guild_id": "10"})
    )
    assert scene.spoken()[-1] == "Alice said: first third"
    assert [u.source_id for u in line.queue] == [600, 700]
    await cog.on_raw_message_delete(
        discord.RawMessageDeleteEvent({"id": "600", "channel_id": str(TEXT), "guild_id": "10"})
    )
    assert scene.spoken()[-1] == "Alice said: third"  # "X said" rules still hold.


async def test_no_merging_once_the_call_is_made_or_when_it_would_not_fit(
    scene: Scene, storage: SQLiteStorage
) -> None:
    line = behind(scene, state="running")
    cog = Narration(scene.bot)
    await cog.on_message(scene.message("first", message_id=600))
    await cog.on_message(scene.message("second", message_id=601))
    assert [u.source_id for u in line.queue] == [600, 601]
    scene.stream.current.state = "queued"
    await storage.update_guild(GUILD, max_text_length=len("second third") - 1)
    await cog.on_message(scene.message("third", message_id=602))
    assert [u.source_id for u in line.queue] == [600, 601, 602]


async def test_merging_can_be_turned_off_by_the_operator(
    make_settings: Callable[..., Settings], scene: Scene
) -> None:
    scene.bot.settings = make_settings(narration_merge=False)
    line = behind(scene)
    cog = Narration(scene.bot)
    await cog.on_message(scene.message("first", message_id=600))
    await cog.on_message(scene.message("second", message_id=601))
    assert [u.source_id for u in line.queue] == [600, 601]


async def test_if_the_merged_call_is_refused_both_messages_are_still_read(scene: Scene) -> None:
    line = behind(scene)
    cog = Narration(scene.bot)
    await cog.on_message(scene.message("first", message_id=600))
    calls = len(scene.queued.call_args_list)

    def refuse_merged(requester: Any, requests: Any, **_: Any) -> Any:
        if " " in requests[0].text.removeprefix("Alice said: "):
            raise QueueFullError(per_user=True, limit=3)
        return scene._queue(requester, requests)

    scene.queued.side_effect = refuse_merged
    await cog.on_message(scene.message("second", message_id=601))
    assert [u.source_id for u in line.queue] == [600, 601]
    # Refused together, then read on its own as before.
    assert scene.spoken()[calls:] == ["Alice said: first second", "second"]


async def two_speakers(scene: Scene, storage: SQLiteStorage, *, bob_voice: str = "Puck") -> Line:
    await storage.update_guild(GUILD, narration_merge_speakers=True)
    await storage.update_member(ALICE, voice="Kore")
    await storage.update_member(BOB, voice=bob_voice)
    return behind(scene)


BOB, CAROL = 2002, 3003


async def test_with_the_setting_two_members_share_one_two_voice_call(
    scene: Scene, storage: SQLiteStorage
) -> None:
    line = await two_speakers(scene, storage)
    cog = Narration(scene.bot)
    await cog.on_message(scene.message("first", message_id=600))
    await cog.on_message(scene.message("mine", message_id=601, author_id=BOB, name="Bob"))
    await cog.on_message(scene.message("again", message_id=602))
    assert [u.source_id for u in line.queue] == [600]
    requester, (request,) = scene.queued.call_args.args
    assert request.text == "Alice: Alice said: first\nBob: Bob said: mine\nAlice: Alice said: again"
    assert (request.voice, request.voice_2) == ("Kore", "Puck")
    assert requester.user_id == ALICE  # The first speaker asks (and is counted).
    assert line.queue[0].label == "Alice & Bob"  # /queue shows both.
    # A third member is never a third voice: their message waits in a call of its own.
    await cog.on_message(scene.message("hey", message_id=603, author_id=CAROL, name="Carol"))
    assert [u.source_id for u in line.queue] == [600, 603]
    assert scene.spoken()[-1] == "Carol said: hey"
    # Bob's message deleted: Alice's two are read in her voice alone, announced once.
    await cog.on_raw_message_delete(
        discord.RawMessageDeleteEvent({"id": "601", "channel_id": str(TEXT), "guild_id": "10"})
    )
    (request,) = [c.args[1] for c in scene.queued.call_args_list][-1]
    assert (request.text, request.voice, request.voice_2) == (
        "Alice said: first again",
        "Kore",
        None,
    )
    assert [u.source_id for u in line.queue] == [600, 603]


async def test_without_the_setting_another_members_message_is_not_merged(
    scene: Scene, storage: SQLiteStorage
) -> None:
    line = await two_speakers(scene, storage)
    await storage.update_guild(GUILD, narration_merge_speakers=False)
    cog = Narration(scene.bot)
    await cog.on_message(scene.message("first", message_id=600))
    await cog.on_message(scene.message("mine", message_id=601, author_id=BOB, name="Bob"))
    assert [u.source_id for u in line.queue] == [600, 601]
    assert all(r.voice_2 is None for c in scene.queued.call_args_list for r in c.args[1])


async def test_two_members_with_one_voice_are_read_in_it_without_labels(
    scene: Scene, storage: SQLiteStorage
) -> None:
    line = await two_speakers(scene, storage, bob_voice="Kore")
    cog = Narration(scene.bot)
    await cog.on_message(scene.message("first", message_id=600))
    await cog.on_message(scene.message("mine", message_id=601, author_id=BOB, name="Bob"))
    assert [u.source_id for u in line.queue] == [600]
    (request,) = scene.queued.call_args.args[1]
    assert (request.text, request.voice_2) == ("Alice said: first Bob said: mine", None)


async def test_a_two_speaker_merge_respects_the_text_limit(
    scene: Scene, storage: SQLiteStorage
) -> None:
    line = await two_speakers(scene, storage)
    # Room for both messages' words, but not for the speaker labels a dialogue adds.
    plain = len("Alice said: first Bob said: mine")
    await storage.update_guild(GUILD, max_text_length=plain + 2)
    cog = Narration(scene.bot)
    await cog.on_message(scene.message("first", message_id=600))
    await cog.on_message(scene.message("mine", message_id=601, author_id=BOB, name="Bob"))
    assert [u.source_id for u in line.queue] == [600, 601]


async def test_in_a_stages_audience_narration_makes_nothing_and_merges_what_waits(
    scene: Scene,
) -> None:
    """While the bot sits in a Stage's audience a message is queued unmade (the player
    queues its call once the bot is invited), so a next message still joins it: one call
    later instead of two, and none for nobody."""
    scene.player.held = True
    line = Line(scene)
    cog = Narration(scene.bot)
    await cog.on_message(scene.message("first", message_id=600))
    await cog.on_message(scene.message("second", message_id=601))
    scene.queued.assert_not_called()  # No stream started...
    scene.bot.services.scheduler.submit.assert_not_called()  # ...and no call queued.
    (utterance,) = line.queue
    assert utterance.source_id == 600
    assert utterance.start is not None  # What the player runs once the bot may be heard.
    waiting = cog.reader.rooms.get(GUILD).waiting[601]
    assert waiting.utterance is utterance
    assert waiting.reading.text == "Alice said: first second"
