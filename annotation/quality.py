"""Annotator quality control with honeypots: the pure rules (no Django).

Honeypots are items whose label the team already knows, served to annotators like any other item
and scored against that label. Three rules, applied by ``annotation.services.quality`` and
``annotation.services.leases``:

1. **Which item is a honeypot** (``honeypot_due``). While an annotator has been served fewer than
   the project's ``onboarding_honeypots`` items in it (and unseen honeypots remain), the next item
   is a honeypot: a new annotator's first N items are honeypots. After onboarding each item is a
   honeypot with probability ``honeypot_rate`` (a Bernoulli draw per served item), so the expected
   share of honeypots among an annotator's items is the rate and their position cannot be guessed.
   The draw is a keyed hash of (project, annotator, items served so far), uniform on [0, 1): it is
   reproducible (asking ``next`` again does not re-roll a refused draw), and unpredictable to
   whoever lacks the key (Django's ``SECRET_KEY``).
2. **When an annotator is paused** (``should_pause``). Once an annotator has answered at least
   ``min_honeypots`` honeypots (counted since their last reinstatement), their accuracy on them (the
   point estimate, correct / answered) under ``min_honeypot_accuracy`` pauses them on the project.
   ``min_honeypot_accuracy == 0`` never pauses. The point estimate with a minimum count is what the
   admin sets and can check by hand; the dashboard shows the Wilson interval beside it so that the
   uncertainty of a small count is visible.
3. **The 95 % interval** of a honeypot accuracy (``wilson_interval``): Wilson's score interval
   (E. B. Wilson, "Probable inference, the law of succession, and statistical inference", JASA 22,
   1927; recommended over the Wald interval by Brown, Cai & DasGupta, "Interval estimation for a
   binomial proportion", Statistical Science 16, 2001): it stays inside [0, 1] and keeps close to
   its nominal coverage for small counts and accuracies near 0 or 1, which is where honeypot
   counts live.
"""

from __future__ import annotations

import hashlib
import math

Z_95 = 1.959963984540054  # the 0.975 quantile of the standard normal


def wilson_interval(correct: int, n: int, z: float = Z_95) -> tuple[float, float] | None:
    """Wilson score interval for a binomial proportion ``correct / n``; ``None`` when ``n == 0``."""
    if n <= 0:
        return None
    if not 0 <= correct <= n:
        raise ValueError(f"correct must be between 0 and n, got {correct} of {n}")
    p = correct / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def draw(key: str, *parts: object) -> float:
    """A uniform number in [0, 1) from a keyed BLAKE2b hash of ``parts`` (reproducible, not guessable)."""
    message = ":".join(str(part) for part in parts).encode()
    digest = hashlib.blake2b(message, key=key.encode()[:64], digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def honeypot_due(*, items_served: int, rate: float, onboarding: int, chance: float) -> bool:
    """Whether the next item of an annotator is a honeypot (rule 1), given how many items of the
    project they were served, its ``honeypot_rate`` and ``onboarding_honeypots``, and a uniform draw."""
    if items_served < onboarding:
        return True
    return chance < rate


def should_pause(*, correct: int, answered: int, min_accuracy: float, min_answered: int) -> bool:
    """Rule 2: paused when at least ``min_answered`` honeypots were answered and the accuracy is
    under ``min_accuracy`` (``0`` turns it off)."""
    if min_accuracy <= 0 or answered < max(min_answered, 1):
        return False
    return correct / answered < min_accuracy


def pause_reason(*, correct: int, answered: int, min_accuracy: float) -> str:
    """The human sentence the labelling page and ``next`` show a paused annotator."""
    return (
        f"Paused: {correct} of {answered} test items answered correctly "
        f"({correct / answered:.0%}), under this project's minimum of {min_accuracy:.0%}. "
        "A project admin can reinstate you."
    )
