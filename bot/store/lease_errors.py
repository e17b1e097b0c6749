"""The lease errors, apart from the lease book: the service catches them, and the backtest
runs the service without the database's libraries."""

from __future__ import annotations


class LeaseLost(Exception):
    """This process does not hold `account`'s lease (any more): it must not act on it."""

    def __init__(self, account: str, owner: str, epoch: int | None) -> None:
        held = "never held" if epoch is None else f"epoch {epoch} taken or expired"
        super().__init__(f"lease of {account} lost by {owner} ({held})")
        self.account = account
        self.owner = owner
        self.epoch = epoch


class LeaseExpiring(LeaseLost):
    """The lease is still this process's, but too close to its expiry to start a write
    (the heartbeat is late): refused for now, not lost."""

    def __init__(self, account: str, owner: str, epoch: int) -> None:
        Exception.__init__(self, f"lease of {account} held by {owner} is about to expire")
        self.account = account
        self.owner = owner
        self.epoch = epoch
