"""The outermost room: the `levbot` command line and the daemon's composition root.

The only place that wires real or simulated adapters to the service, the journal and
Telegram; nothing below imports it.
"""
