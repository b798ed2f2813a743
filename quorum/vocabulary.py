"""Names both sides of Quorum speak, in one place: the acquisition strategies a project can pick.

Plain Python (no Django, no NumPy): ``annotation.models`` builds its ``Strategy`` choices (and the
database check constraint) from this list, and ``acquisition.strategies`` implements exactly these
names. A strategy is added here and in ``acquisition.strategies``, nowhere else.
"""

from __future__ import annotations

#: (value, label) in the order the settings form lists them; the first is the default.
STRATEGY_CHOICES: tuple[tuple[str, str], ...] = (
    ("msal", "MSAL (uncertainty + diversity)"),
    ("margin", "Margin"),
    ("entropy", "Entropy"),
    ("least_confidence", "Least confidence"),
    ("bald", "BALD"),
    ("qbc", "Query by committee"),
    ("coreset", "Core-set (k-center)"),
    ("random", "Random"),
)

STRATEGIES: tuple[str, ...] = tuple(value for value, _ in STRATEGY_CHOICES)
