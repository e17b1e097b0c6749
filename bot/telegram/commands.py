"""Chat commands. Each handler parses, calls the control layer, and formats the answer.

Only chats in `allowed_chat_ids` get anything, and, when `allowed_user_ids` is set, only
those users' commands and button presses count: the gatekeeper runs first for every
update (new or edited), writes the command audit, and stops what is not allowed (other
chats without a reply, other users with a one-line refusal).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

from telegram import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest, TelegramError
from telegram.ext import ApplicationHandlerStop, ContextTypes

from bot.app.control import (
    Controls,
    DrivenElsewhere,
    UnknownAccount,
    backstop_notes,
    change_lines,
)
from bot.domain.actions import describe_action
from bot.domain.summary import account_metrics
from bot.domain.targets import TargetError
from bot.domain.vocabulary import ALL_ACCOUNTS
from bot.exchange.port import ExchangeError
from bot.telegram.chart import leverage_chart
from bot.telegram.formatting import (
    backstop_changes_text,
    esc,
    history_text,
    plan_text,
    positions_text,
    split_message,
    status_text,
)

logger = logging.getLogger(__name__)

CONFIRM_FOR = timedelta(seconds=60)
REFUSAL = "Sorry, you are not allowed to command this bot."
WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}

HELP = {
    "help": "what each command does",
    "status": "equity, leverage against the band, margin ratio, state, backstops",
    "positions": "[account] — every position in detail",
    "plan": "[account] — what the bot would do right now (trades, backstops), and why",
    "rebalance": "[account] — run a cycle now (asks to confirm)",
    "pause": "[account|all] — stop acting; watching and alerts go on",
    "resume": "[account|all] — act again",
    "target": "<account> [symbol] <leverage> [min] [max] — change a band (asks to confirm)",
    "history": "[n] — the last actions with reasons and results",
    "chart": "[account] [24h|7d] — leverage against the band, as a picture",
}

Context = ContextTypes.DEFAULT_TYPE


class Usage(Exception):
    """Wrong arguments: the message is the one-line reply."""

    def __init__(self, usage: str, problem: str | None = None) -> None:
        super().__init__(f"{problem}. Usage: {usage}" if problem else f"Usage: {usage}")


@dataclass(frozen=True, slots=True)
class Confirmation:
    chat_id: int
    expires_at: datetime
    summary: str
    run: Callable[[], Awaitable[str]]


class ChatCommands:
    """The handlers, bound to the control layer."""

    def __init__(
        self,
        controls: Controls,
        allowed_chat_ids: tuple[int, ...],
        clock: Callable[[], datetime],
        allowed_user_ids: tuple[int, ...] | None = None,
    ) -> None:
        self.controls = controls
        self.allowed = frozenset(allowed_chat_ids)
        # None: anyone in an allowed chat counts.
        self.allowed_users = None if allowed_user_ids is None else frozenset(allowed_user_ids)
        self.clock = clock
        self.pending: dict[str, Confirmation] = {}

    # -- the gate ---------------------------------------------------------------------

    async def gatekeeper(self, update: object, context: Context) -> None:
        """Audit every command and button press; stop what may not count.

        Runs before every handler, for new and edited messages alike (PTB hands an edited
        command to the same CommandHandler, so it must pass the same gate). Other chats
        are ignored without a reply; in an allowed chat, a user outside
        `allowed_user_ids` gets a short refusal for a command or button press.
        """
        if not isinstance(update, Update):
            raise ApplicationHandlerStop
        chat = update.effective_chat
        user = update.effective_user
        who = "" if user is None else (user.username or str(user.id))
        text = ""
        # effective_message also covers edited messages and channel posts; a button press
        # comes first because its effective_message is the bot's own message.
        message = update.effective_message
        if update.callback_query is not None:
            text = f"[button] {update.callback_query.data or ''}"
        elif message is not None and message.text:
            text = message.text
        chat_allowed = chat is not None and chat.id in self.allowed
        user_allowed = self.allowed_users is None or (
            user is not None and user.id in self.allowed_users
        )
        is_command = text.startswith("/") or text.startswith("[button]")
        if is_command or not chat_allowed:
            command, _, args = text.partition(" ")
            await self.controls.journal.audit(
                chat.id if chat is not None else 0,
                who,
                command[:64],
                args[:500],
                chat_allowed and user_allowed,
            )
        if not chat_allowed:
            logger.warning("ignored an update from unauthorised chat %s", chat and chat.id)
            raise ApplicationHandlerStop
        if not user_allowed:
            logger.warning(
                "refused an update from user %s in chat %s", user and user.id, chat and chat.id
            )
            if is_command:
                await _refuse(update)
            raise ApplicationHandlerStop

    # -- commands -----------------------------------------------------------------------

    async def help(self, update: Update, context: Context) -> None:
        lines = ["<b>levbot</b> keeps your leverage in its band. Commands:"]
        lines += [f"/{name} {esc(text)}" for name, text in HELP.items()]
        await self._reply(update, "\n".join(lines))

    async def status(self, update: Update, context: Context) -> None:
        await self._reply(update, status_text(await self.controls.statuses(), self.clock()))

    async def positions(self, update: Update, context: Context) -> None:
        name = self._optional_account(context.args, "/positions [account]")
        await self._reply(update, positions_text(await self.controls.positions(name)))

    async def plan(self, update: Update, context: Context) -> None:
        name = self._optional_account(context.args, "/plan [account]")
        names = self.controls.resolve(name)
        message = await self._reply(update, "⏳ asking the exchange…")
        parts = []
        for account in names:
            try:
                snapshot, proposal = await self.controls.preview(account)
            except ExchangeError as error:
                parts.append(f"<b>{esc(account)}</b>: exchange error: {esc(error)}")
                continue
            except DrivenElsewhere:
                parts.append(f"<b>{esc(account)}</b>: driven by another levbot process")
                continue
            leverage = account_metrics(snapshot).leverage
            text = plan_text(account, snapshot, proposal, leverage)
            parts.append(f"{text}\n{await self._backstop_changes(account)}")
        await self._edit_or_reply(update, message, "\n\n".join(parts))

    async def _backstop_changes(self, account: str) -> str:
        """What the next cycle would do to the account's resting stop ladder."""
        off = self.controls.backstop_off(account)
        if off is not None:
            return esc(off)
        try:
            preview = await self.controls.backstop_preview(account)
        except ExchangeError as error:
            return f"backstop: exchange error: {esc(error)}"
        return backstop_changes_text(change_lines(preview), backstop_notes(preview))

    async def rebalance(self, update: Update, context: Context) -> None:
        account = self._one_account(context.args, "/rebalance [account]")
        self.controls.driven_here(account)  # asked before the confirmation, not after

        async def run() -> str:
            report = await self.controls.rebalance(account)
            done = [describe_action(o.action) for o in report.outcomes if o.ok]
            failed = [
                f"{describe_action(o.action)}: {o.error}" for o in report.outcomes if not o.ok
            ]
            held = [f"held back: {describe_action(d.action)}: {d.reason}" for d in report.held_back]
            lines = [f"<b>{esc(account)}</b> cycle: {esc(report.status.value)}"]
            lines += [f"✅ {esc(line)}" for line in done]
            lines += [f"❌ {esc(line)}" for line in failed]
            lines += [f"⏸ {esc(line)}" for line in held]
            if not done and not failed and not held:
                lines.append(esc(report.error or "nothing to do: leverage is in its band"))
            return "\n".join(lines)

        await self._ask(update, f"Run a cycle on <b>{esc(account)}</b> now?", run)

    async def pause(self, update: Update, context: Context) -> None:
        await self._set_paused(update, context, True)

    async def resume(self, update: Update, context: Context) -> None:
        await self._set_paused(update, context, False)

    async def _set_paused(self, update: Update, context: Context, paused: bool) -> None:
        word = "pause" if paused else "resume"
        name = self._optional_account(context.args, f"/{word} [account|all]")
        names = await self.controls.set_paused(name, paused, self._who(update))
        state = "paused: watching and alerting only" if paused else "active again"
        await self._reply(update, f"{esc(', '.join(names))}: {state}")

    async def target(self, update: Update, context: Context) -> None:
        usage = "/target <account> [symbol] <leverage> [min] [max]"
        args = list(context.args or [])
        if len(args) < 2:
            raise Usage(usage)
        account = self._one_account(args[:1], usage)
        symbol = args[1] if "/" in args[1] else None
        numbers = args[2:] if symbol else args[1:]
        if not 1 <= len(numbers) <= 3:
            raise Usage(usage)
        values = [_decimal(text, usage) for text in numbers]
        current = await self.controls.current_target(account, symbol)
        low = values[1] if len(values) > 1 else None
        high = values[2] if len(values) > 2 else None
        try:
            new = current.moved_to(values[0], low, high)
        except TargetError as error:
            raise Usage(usage, str(error)) from None
        scope = f"{account} {symbol}" if symbol else account
        by = self._who(update)

        async def run() -> str:
            await self.controls.set_target(account, symbol, new, by)
            return f"<b>{esc(scope)}</b>: target {new.leverage}, band {new.min}–{new.max} saved"

        await self._ask(
            update,
            f"Set <b>{esc(scope)}</b> to target {new.leverage}, band {new.min}–{new.max}"
            f" (now {current.leverage}, {current.min}–{current.max})?",
            run,
        )

    async def history(self, update: Update, context: Context) -> None:
        args = context.args or []
        if len(args) > 1 or (args and not args[0].isdigit()):
            raise Usage("/history [n]  (n: 1-50)")
        limit = max(1, min(50, int(args[0]) if args else 10))
        await self._reply(update, history_text(await self.controls.history(limit)))

    async def chart(self, update: Update, context: Context) -> None:
        usage = "/chart [account] [24h|7d]"
        args = list(context.args or [])
        window = "24h"
        if args and args[-1] in WINDOWS:
            window = args.pop()
        account = self._one_account(args, usage)
        snapshots, actions, target = await self.controls.chart_data(
            account, self.clock() - WINDOWS[window]
        )
        if not snapshots:
            await self._reply(update, f"No snapshots of {esc(account)} in the last {window}.")
            return
        picture = await asyncio.to_thread(
            leverage_chart, account, snapshots, actions, target, window
        )
        assert update.effective_chat is not None
        await update.effective_chat.send_photo(
            picture, caption=f"{account}: leverage vs band {target.min}–{target.max}, {window}"
        )

    # -- buttons ------------------------------------------------------------------------

    async def button(self, update: Update, context: Context) -> None:
        query = update.callback_query
        if query is None or query.data is None:
            return
        token, _, choice = query.data.partition(":")
        confirmation = self.pending.pop(token, None)
        chat = update.effective_chat
        if confirmation is None or chat is None or chat.id != confirmation.chat_id:
            await query.answer("This request is no longer open.")
            await _edit(query, "Expired or already answered.")
            return
        if self.clock() > confirmation.expires_at:
            await query.answer("Expired")
            await _edit(query, f"{confirmation.summary}\n⌛ expired: nothing done.")
            return
        if choice != "yes":
            await query.answer("Cancelled")
            await _edit(query, f"{confirmation.summary}\nCancelled.")
            return
        await query.answer("On it")
        await _edit(query, f"{confirmation.summary}\n⏳ working…")
        await _edit(query, await confirmation.run())

    # -- plumbing -----------------------------------------------------------------------

    async def on_error(self, update: object, context: Context) -> None:
        """One place for errors: usage mistakes get a one-line reply, the rest a short note."""
        error = context.error
        if not isinstance(update, Update) or update.effective_chat is None:
            logger.error("telegram error outside a chat: %s", error)
            return
        if update.effective_chat.id not in self.allowed:
            return
        if isinstance(error, Usage):
            text = esc(error)
        elif isinstance(error, UnknownAccount):
            names = ", ".join(self.controls.account_names())
            text = f"Unknown account {esc(error)}. Accounts: {esc(names)}"
        elif isinstance(error, DrivenElsewhere):
            text = (
                f"{esc(error)} is driven by another levbot process right now: it cycles "
                "there on its schedule. /status, /positions, /pause, /resume and /target "
                "work from here; /plan and /rebalance only where it is driven."
            )
        else:
            logger.error("command failed", exc_info=error)
            text = f"Sorry, that failed: {esc(type(error).__name__)}. The log has details."
        await update.effective_chat.send_message(text, parse_mode=ParseMode.HTML)

    async def _ask(self, update: Update, summary: str, run: Callable[[], Awaitable[str]]) -> None:
        chat = update.effective_chat
        assert chat is not None
        self._forget_expired()
        token = secrets.token_urlsafe(8)
        self.pending[token] = Confirmation(chat.id, self.clock() + CONFIRM_FOR, summary, run)
        keyboard = InlineKeyboardMarkup([[
            InlineKeyboardButton("Confirm", callback_data=f"{token}:yes"),
            InlineKeyboardButton("Cancel", callback_data=f"{token}:no"),
        ]])  # fmt: skip
        await chat.send_message(
            f"{summary}\n<i>Confirm within 60 s.</i>", parse_mode=ParseMode.HTML,
            reply_markup=keyboard,
        )  # fmt: skip

    def _forget_expired(self) -> None:
        now = self.clock()
        for token in [t for t, c in self.pending.items() if c.expires_at < now - CONFIRM_FOR]:
            del self.pending[token]

    def _optional_account(self, args: list[str] | None, usage: str) -> str | None:
        if not args:
            return None
        if len(args) > 1:
            raise Usage(usage)
        self.controls.resolve(args[0])
        return args[0]

    def _one_account(self, args: list[str] | None, usage: str) -> str:
        names = self.controls.account_names()
        if not args:
            if len(names) == 1:
                return names[0]
            raise Usage(usage, f"name one of: {', '.join(names)}")
        if len(args) > 1 or args[0] == ALL_ACCOUNTS:
            raise Usage(usage)
        return self.controls.resolve(args[0])[0]

    @staticmethod
    def _who(update: Update) -> str:
        user = update.effective_user
        chat = update.effective_chat
        if user is not None:
            return f"telegram:{user.username or user.id}"
        return f"telegram:{chat.id if chat else '?'}"

    async def _reply(self, update: Update, text: str) -> Message | None:
        chat = update.effective_chat
        assert chat is not None
        message: Message | None = None
        for chunk in split_message(text):
            message = await chat.send_message(chunk, parse_mode=ParseMode.HTML)
        return message

    async def _edit_or_reply(self, update: Update, message: Message | None, text: str) -> None:
        chunks = split_message(text)
        if message is not None and len(chunks) == 1:
            await message.edit_text(chunks[0], parse_mode=ParseMode.HTML)
            return
        await self._reply(update, text)


async def _refuse(update: Update) -> None:
    """A one-line no to a user outside `allowed_user_ids`; a courtesy, so a failure to
    send it is only logged."""
    try:
        if update.callback_query is not None:
            await update.callback_query.answer(REFUSAL)
        elif update.effective_chat is not None:
            await update.effective_chat.send_message(REFUSAL)
    except TelegramError as error:
        logger.warning("could not send a refusal: %s", type(error).__name__)


async def _edit(query: CallbackQuery, text: str) -> None:
    """Edit the button's message; an edit that changes nothing is not an error."""
    try:
        await query.edit_message_text(text, parse_mode=ParseMode.HTML)
    except BadRequest as error:
        if "not modified" not in str(error).lower():
            raise


def _decimal(text: str, usage: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise Usage(usage, f"{text!r} is not a number") from None
    if not value.is_finite():
        raise Usage(usage, f"{text!r} is not a number")
    return value
