"""Leases on the session's real PostgreSQL: claim, renew, expiry, takeover, balance, fence.

Lease periods are fractions of a second so expiry is seen in real (database) time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from bot.store.journal import Journal
from bot.store.leases import (
    TELEGRAM_LEASE,
    Fence,
    LeaseBook,
    LeaseExpiring,
    LeaseLost,
    LeaseOwner,
)
from tests.integration.store.builders import reduce_order
from tests.support.postgres import TestPostgres

ACCOUNTS = ["a1", "a2", "a3", "a4"]
LONG = timedelta(seconds=30)
SHORT = timedelta(seconds=0.6)
NOW = datetime(2021, 5, 19, 12, 0, tzinfo=UTC)


def owner(name: str) -> LeaseOwner:
    return LeaseOwner(owner=name, run_id=None, host="test", pid=1)


A, B, C = owner("A"), owner("B"), owner("C")


@pytest.fixture
async def journal(postgres: TestPostgres) -> AsyncIterator[Journal]:
    opened = await Journal.open(postgres.url(postgres.empty_database()), clock=lambda: NOW)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def book(journal: Journal) -> LeaseBook:
    return LeaseBook(journal.engine)


async def test_heartbeat_when_alone_then_claims_every_account_at_epoch_one(
    book: LeaseBook,
) -> None:
    await book.register(A, ACCOUNTS, LONG)
    round_ = await book.heartbeat(A, {}, ACCOUNTS, LONG)
    assert round_.gained == tuple(ACCOUNTS)
    assert dict(round_.held) == dict.fromkeys(ACCOUNTS, 1)
    assert (round_.owners, round_.share, round_.lost, round_.surplus) == (1, 4, (), ())
    again = await book.heartbeat(A, round_.held, ACCOUNTS, LONG)
    assert (again.gained, again.lost, dict(again.held)) == ((), (), dict(round_.held))


async def test_heartbeat_when_second_owner_joins_then_first_releases_its_surplus(
    book: LeaseBook,
) -> None:
    await book.register(A, ACCOUNTS, LONG)
    first = await book.heartbeat(A, {}, ACCOUNTS, LONG)
    await book.register(B, ACCOUNTS, LONG)
    starved = await book.heartbeat(B, {}, ACCOUNTS, LONG)
    assert (starved.owners, starved.share, starved.gained) == (2, 2, ())
    crowded = await book.heartbeat(A, first.held, ACCOUNTS, LONG)
    assert crowded.surplus == ("a3", "a4")
    await book.release(A, crowded.surplus)
    fed = await book.heartbeat(B, starved.held, ACCOUNTS, LONG)
    assert fed.gained == ("a3", "a4")
    assert dict(fed.held) == {"a3": 2, "a4": 2}  # a second claim: a new epoch
    holders = {lease.name: lease.owner for lease in await book.leases()}
    assert holders == {"a1": "A", "a2": "A", "a3": "B", "a4": "B"}


async def test_heartbeat_when_owner_stops_beating_then_taken_over_after_expiry(
    book: LeaseBook,
) -> None:
    await book.register(A, ACCOUNTS, SHORT)
    held_by_a = (await book.heartbeat(A, {}, ACCOUNTS, SHORT)).held
    await book.register(B, ACCOUNTS, SHORT)
    early = await book.heartbeat(B, {}, ACCOUNTS, SHORT)
    assert early.gained == ()
    await asyncio.sleep(SHORT.total_seconds() + 0.2)
    takeover = await book.heartbeat(B, early.held, ACCOUNTS, SHORT)
    assert takeover.owners == 1  # A's presence expired with its leases
    assert takeover.gained == tuple(ACCOUNTS)
    assert dict(takeover.held) == dict.fromkeys(ACCOUNTS, 2)
    woken = await book.heartbeat(A, held_by_a, ACCOUNTS, SHORT)
    assert woken.lost == tuple(ACCOUNTS)
    assert woken.gained == ()


async def test_heartbeat_when_renewed_in_time_then_nothing_expires(book: LeaseBook) -> None:
    await book.register(A, ACCOUNTS, SHORT)
    held = (await book.heartbeat(A, {}, ACCOUNTS, SHORT)).held
    await book.register(B, ACCOUNTS, LONG)
    for _ in range(4):
        await asyncio.sleep(SHORT.total_seconds() / 3)
        held = (await book.heartbeat(A, held, ACCOUNTS, SHORT)).held
        assert (await book.heartbeat(B, {}, ACCOUNTS, LONG)).gained == ()
    assert dict(held) == dict.fromkeys(ACCOUNTS, 1)


async def test_heartbeat_when_three_owners_claim_at_once_then_disjoint_shares(
    journal: Journal,
) -> None:
    accounts = [f"acct{i:02}" for i in range(30)]
    books = [LeaseBook(journal.engine) for _ in range(3)]
    owners = [A, B, C]
    for book, me in zip(books, owners, strict=True):
        await book.register(me, accounts, LONG)
    held: list[dict[str, int]] = [{}, {}, {}]
    for _ in range(3):
        rounds = await asyncio.gather(
            *(
                book.heartbeat(me, h, accounts, LONG)
                for book, me, h in zip(books, owners, held, strict=True)
            )
        )
        held = [dict(r.held) for r in rounds]
    shares = [set(h) for h in held]
    assert [len(s) for s in shares] == [10, 10, 10]
    assert set.union(*shares) == set(accounts)


async def test_heartbeat_when_role_offered_to_two_then_exactly_one_holds_it(
    journal: Journal,
) -> None:
    books = [LeaseBook(journal.engine), LeaseBook(journal.engine)]
    for book, me in zip(books, (A, B), strict=True):
        await book.register(me, [TELEGRAM_LEASE], LONG)
    rounds = await asyncio.gather(
        *(
            book.heartbeat(me, {}, [], LONG, (TELEGRAM_LEASE,))
            for book, me in zip(books, (A, B), strict=True)
        )
    )
    assert sorted(TELEGRAM_LEASE in r.held for r in rounds) == [False, True]


async def test_leave_when_owner_stops_cleanly_then_others_take_over_at_once(
    book: LeaseBook,
) -> None:
    await book.register(A, ACCOUNTS, LONG)
    await book.heartbeat(A, {}, ACCOUNTS, LONG)
    await book.register(B, ACCOUNTS, LONG)
    await book.leave(A)
    taken = await book.heartbeat(B, {}, ACCOUNTS, LONG)
    assert (taken.owners, taken.gained) == (1, tuple(ACCOUNTS))


async def test_record_intent_when_lease_held_then_journaled(
    journal: Journal, book: LeaseBook
) -> None:
    await book.register(A, ["a1"], LONG)
    held = (await book.heartbeat(A, {}, ["a1"], LONG)).held
    journal.fence = Fence("A", epochs=dict(held))
    await journal.record_intent("a1", None, reduce_order(), "lb1")
    assert [p.client_id for p in await journal.pending_intents("a1")] == ["lb1"]


async def test_record_intent_when_lease_taken_by_another_then_lease_lost_and_nothing_written(
    journal: Journal, book: LeaseBook
) -> None:
    await book.register(A, ["a1"], SHORT)
    held = (await book.heartbeat(A, {}, ["a1"], SHORT)).held
    fence = journal.fence = Fence("A", epochs=dict(held))
    await asyncio.sleep(SHORT.total_seconds() + 0.2)  # A paused: its lease expires
    await book.register(B, ["a1"], LONG)
    assert (await book.heartbeat(B, {}, ["a1"], LONG)).gained == ("a1",)
    with pytest.raises(LeaseLost, match="a1"):
        await journal.record_intent("a1", None, reduce_order(), "lb1")
    assert await journal.pending_intents("a1") == []
    assert "a1" not in fence.epochs  # forgotten: the next intent fails without asking


async def test_record_intent_when_lease_expired_but_not_taken_then_lease_lost(
    journal: Journal, book: LeaseBook
) -> None:
    await book.register(A, ["a1"], SHORT)
    held = (await book.heartbeat(A, {}, ["a1"], SHORT)).held
    journal.fence = Fence("A", epochs=dict(held))
    await asyncio.sleep(SHORT.total_seconds() + 0.2)
    with pytest.raises(LeaseLost):
        await journal.record_intent("a1", None, reduce_order(), "lb1")


async def test_record_intent_when_less_than_margin_left_then_refused_but_still_held(
    journal: Journal, book: LeaseBook
) -> None:
    await book.register(A, ["a1"], LONG)
    held = (await book.heartbeat(A, {}, ["a1"], LONG)).held
    fence = journal.fence = Fence("A", margin=LONG + timedelta(seconds=1), epochs=dict(held))
    with pytest.raises(LeaseExpiring):
        await journal.record_intent("a1", None, reduce_order(), "lb1")
    assert await journal.pending_intents("a1") == []
    assert fence.epochs == {"a1": 1}  # late, not lost: the next heartbeat renews it


async def test_record_intent_when_account_never_held_then_lease_lost(journal: Journal) -> None:
    journal.fence = Fence("A")
    with pytest.raises(LeaseLost, match="never held"):
        await journal.record_intent("a1", None, reduce_order(), "lb1")
    assert await journal.pending_intents("a1") == []
