"""The call core, sans-I/O: SIP bytes, times and the shell's reports in; bytes to send,
effects (start/stop a warning) and the next timer deadline out.

- :mod:`.decision`: Request-URI → number → listing (or why not);
- :mod:`.redirect`: redirect mode — the 302, and the INVITE held while its warning plays;
- :mod:`.controller`: SIP methods, transactions and every fail-open rule;
- :mod:`.effects`: what the shell is asked to do.
"""

from ringback.calls.controller import ALLOW, CallController
from ringback.calls.effects import Effect, StartWarning, StopWarning
from ringback.calls.metrics import SipMetrics

__all__ = ["ALLOW", "CallController", "Effect", "SipMetrics", "StartWarning", "StopWarning"]
