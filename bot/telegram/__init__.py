"""Telegram: the owner's chat with levbot (python-telegram-bot 22, in the daemon's loop)."""

import os

# PTB 22 warns on every integer time period unless told to use timedelta (its next
# default); opting in early keeps RetryAfter and timeouts warning-free.
os.environ.setdefault("PTB_TIMEDELTA", "true")
