"""`levbot check` warns about what an API key may do, where the venue tells (issue 9 §5):
Binance's GET /sapi/v1/account/apiRestrictions, read by real ccxt over loopback."""

from __future__ import annotations

from typing import Any

from tests.integration.exchange.loopback import LoopbackVenue
from tests.integration.exchange.venues import adapter_for, serve

RESTRICTIONS = "/sapi/v1/account/apiRestrictions"


def restrictions(**overrides: Any) -> dict[str, Any]:
    """A key as levbot wants it (Binance's reply shape), with `overrides`."""
    return {
        "ipRestrict": True,
        "createTime": 1698645219000,
        "enableReading": True,
        "enableWithdrawals": False,
        "enableInternalTransfer": False,
        "enableMargin": False,
        "enableFutures": True,
        "permitsUniversalTransfer": True,
        "enableVanillaOptions": False,
        "enableSpotAndMarginTrading": False,
    } | overrides


async def test_key_warnings_when_key_can_withdraw_and_has_no_ip_restriction_then_both_warned(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "binanceusdm")
    venue.reply("GET", RESTRICTIONS, restrictions(enableWithdrawals=True, ipRestrict=False))

    async with adapter_for("binanceusdm", venue) as adapter:
        warnings = await adapter.key_warnings()

    assert warnings == [
        "the API key can withdraw funds: turn withdrawals off (levbot never withdraws)",
        "the API key is not restricted to trusted IPs: restrict it to this host's address",
    ]
    # Signed with the account's key, like every private call.
    [call] = venue.calls(RESTRICTIONS)
    assert call.headers.get("X-MBX-APIKEY") == "test-api-key-0001"
    assert "signature" in call.query


async def test_key_warnings_when_key_cannot_transfer_or_trade_futures_then_warned(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "binanceusdm")
    venue.reply(
        "GET",
        RESTRICTIONS,
        restrictions(permitsUniversalTransfer=False, enableFutures=False,
                     enableInternalTransfer=True),
    )  # fmt: skip

    async with adapter_for("binanceusdm", venue) as adapter:
        warnings = await adapter.key_warnings()

    assert warnings == [
        "the API key can transfer funds to other Binance accounts (internal transfer): turn it off",
        "the API key cannot move funds between wallets (Permits Universal Transfer is off): "
        "collateral cannot come from spot; enable it, or the bot de-levers with orders only",
        "the API key cannot trade futures: enable futures on the key",
    ]


async def test_key_warnings_when_key_is_restricted_as_advised_then_none(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "binanceusdm")
    venue.reply("GET", RESTRICTIONS, restrictions())

    async with adapter_for("binanceusdm", venue) as adapter:
        assert await adapter.key_warnings() == []


async def test_key_warnings_when_venue_refuses_the_question_then_one_line_says_so(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "binanceusdm")
    venue.reply("GET", RESTRICTIONS, {"code": -2015, "msg": "Invalid API-key, IP, or permissions"},
                status=401)  # fmt: skip

    async with adapter_for("binanceusdm", venue) as adapter:
        [warning] = await adapter.key_warnings()

    assert warning.startswith("could not read the API key's permissions: AuthenticationError")
    assert "test-secret-0002" not in warning


async def test_key_warnings_when_venue_does_not_tell_then_none(venue: LoopbackVenue) -> None:
    serve(venue, "bybit")

    async with adapter_for("bybit", venue) as adapter:
        assert await adapter.key_warnings() == []
    assert venue.unmatched == []
