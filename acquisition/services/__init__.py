"""Every write of the model side, one job per module; atomic, validating, raising ``quorum.errors``.

- ``embedding``: encode waiting items and store their vectors (and the vectors a push brought).
- ``scoring``: a scoring run's computation: plan, score a chunk, reduce to the batch.
- ``snapshot``: the label snapshot a model learns from and the held-out split.
- ``fitting``: fit and evaluate a candidate model version.
- ``gate``: candidate against current, promote or reject.
- ``registry``: load, cache and promote model versions.
- ``drift``: the drift check of pushed pools.
- ``files``: removing a deleted project's or model version's files on disk.
- ``jobs``: what scoring runs and training jobs share (one active per project, stale ones expire).

None of them decides what happens next: ``loop`` calls them and starts the next stage.
"""
