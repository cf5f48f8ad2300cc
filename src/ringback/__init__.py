"""ringback: court-ordered warning announcements in the SIP call-setup path."""

__version__ = "0.1.0"
