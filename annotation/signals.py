"""What the people side announces; ``loop.receivers`` decides what follows.

Both are sent inside the transaction of the write they announce; receivers that start work do so
when it commits, and an exception in a receiver rolls the write back (``send``, not ``send_robust``).

- ``batch_stored(sender=Project, project, batch)``: an ingest stored new or changed items (the batch
  waits in ``received`` until it is processed).
- ``labels_changed(sender=Project, project)``: an annotation was submitted, changed or taken back, or
  a review decided an item: the project's consensus and agreement figures are out of date.
"""

from django.dispatch import Signal

batch_stored = Signal()
labels_changed = Signal()
