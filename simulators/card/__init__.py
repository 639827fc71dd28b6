"""A Qibixx MDB interface with a cashless card reader behind it, served on a pseudo-terminal.

The real driver opens :attr:`CardSimulator.port` exactly as it would open ``/dev/ttyACM0``,
and the simulator answers the line protocol of PROTOCOLS.md section 2 byte for byte.

Behind the interface stand a scriptable customer (:meth:`~CardSimulator.present_card`, or an
``auto`` answer to every request), faults (reset, malfunction, unplug, garbage, lines cut short, a
replayed result, silence) and a
settlement report like a payment provider's: the latest vend requests, whether each was
captured, reverted or is still open, with totals over every request since the start.

Replug: a recreated pty gets a new ``/dev/pts/N``, so ``.port`` is a symlink (``ttyACM0`` in a
private temporary directory) that always points at the current pty. :meth:`~CardSimulator.unplug`
closes the pty and removes the link, so opening the port fails as for a missing USB device;
:meth:`~CardSimulator.replug` makes a fresh pty (a power-cycled interface, master mode off).

- :mod:`~simulators.card.reader`: the interface and the reader, as a state machine;
- :mod:`~simulators.card.settlement`: the payment provider's record;
- :mod:`~simulators.card.simulator`: both on a :class:`~simulators.pty_port.PtyPort`;
- :mod:`~simulators.card.entry_points`: ``sim://`` and ``kiosk simulate card``.
"""

from simulators.card.entry_points import attach, console
from simulators.card.reader import CardOutcome, ReaderState
from simulators.card.settlement import Settlement, SettlementReport, Transaction
from simulators.card.simulator import GARBAGE, CardSimulator

__all__ = [
    "GARBAGE",
    "CardOutcome",
    "CardSimulator",
    "ReaderState",
    "Settlement",
    "SettlementReport",
    "Transaction",
    "attach",
    "console",
]
