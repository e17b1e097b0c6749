"""A loopback Binance USDⓈ-M + spot venue over the paper account, misbehaving on purpose.

`levbot paper-exchange` serves it; the daemon reaches it through real ccxt with
`api_base_url = "http://127.0.0.1:PORT"`. See faults.py for what it breaks.
"""

from bot.exchange.paper_venue.app import PaperVenue, VenueOptions, serve
from bot.exchange.paper_venue.faults import FaultKind, FaultPlan, FaultSpecError
from bot.exchange.paper_venue.signing import Signer
from bot.exchange.paper_venue.venue_book import VenueBook

__all__ = [
    "FaultKind",
    "FaultPlan",
    "FaultSpecError",
    "PaperVenue",
    "Signer",
    "VenueBook",
    "VenueOptions",
    "serve",
]
