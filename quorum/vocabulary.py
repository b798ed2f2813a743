"""Names both sides of Quorum speak, in one place: the task types and the acquisition strategies a
project can pick.

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
    ("max_entropy", "Most uncertain tag (multi-label)"),
    ("mmc", "Maximum model change (multi-label)"),
)

STRATEGIES: tuple[str, ...] = tuple(value for value, _ in STRATEGY_CHOICES)

# --- task types ------------------------------------------------------------------------------------
# What one answer is: one label per item (``text_classification``) or a tag set, any subset of the
# project's labels (``multi_label``). Each side asks its own task-type object (``annotation.task_types``,
# ``acquisition.task_types``) keyed by these names.

TEXT_CLASSIFICATION = "text_classification"
MULTI_LABEL = "multi_label"

TASK_TYPE_CHOICES: tuple[tuple[str, str], ...] = (
    (TEXT_CLASSIFICATION, "Single-label text classification"),
    (MULTI_LABEL, "Multi-label text classification (a tag set per item)"),
)

#: The strategies each task type offers, its default first. Multi-label reads the single-label names
#: on tag probabilities (``entropy``: mean binary entropy over tags, ``margin``: distance of the tags to
#: their thresholds around the predicted cardinality, ``msal``/``coreset``: the same diversity term);
#: ``least_confidence``, ``bald`` and ``qbc`` are single-label only.
TASK_STRATEGIES: dict[str, tuple[str, ...]] = {
    TEXT_CLASSIFICATION: ("msal", "margin", "entropy", "least_confidence", "bald", "qbc", "coreset", "random"),
    MULTI_LABEL: ("margin", "msal", "entropy", "max_entropy", "mmc", "coreset", "random"),
}


def default_strategy(task_type: str) -> str:
    """The strategy a new project of ``task_type`` starts with when the request names none: the first
    of ``TASK_STRATEGIES`` (single-label ``msal``, multi-label ``margin``; the measurements behind each
    are in ``docs/strategies.md`` and ``acquisition.multilabel.DEFAULT_MULTILABEL_STRATEGY``)."""
    return TASK_STRATEGIES.get(task_type, TASK_STRATEGIES[TEXT_CLASSIFICATION])[0]


def is_multi_label(task_type: str) -> bool:
    return task_type == MULTI_LABEL


# --- encoders ------------------------------------------------------------------------------------
# The sentence encoders a project can name, and the length of their vectors. ``acquisition.encoders``
# builds exactly these (tests/test_encoders.py checks the two agree); a deployment adds its own local
# model directories with ``QUORUM_EXTRA_ENCODERS`` (settings), never an arbitrary path in a request.

#: Packaged encoders by name (both spellings of all-MiniLM-L6-v2).
KNOWN_ENCODERS: dict[str, int] = {
    "sentence-transformers/all-MiniLM-L6-v2": 384,
    "all-MiniLM-L6-v2": 384,
}
#: ``hashing:<dim>``: the model-free hashing encoder, any dimension from 1 to this.
HASHING_PREFIX = "hashing:"
MAX_HASHING_DIM = 65_536
#: The longest vector a project may store (the hashing encoder's largest; no packaged model is longer).
MAX_EMBEDDING_DIM = MAX_HASHING_DIM


def encoder_dimension(name: str, extra: dict[str, int] | None = None) -> int | None:
    """The length of the vectors encoder ``name`` makes, or None when it is not an installed encoder.

    ``extra``: the deployment's own encoders (name or local directory -> dimension)."""
    if name in KNOWN_ENCODERS:
        return KNOWN_ENCODERS[name]
    if extra and name in extra:
        return extra[name]
    if name.startswith(HASHING_PREFIX):
        digits = name[len(HASHING_PREFIX) :]
        if digits.isascii() and digits.isdigit() and not digits.startswith("0") and int(digits) <= MAX_HASHING_DIM:
            return int(digits)
    return None
