"""The loop's decisions, one stage per module: every "what happens next" of Quorum is here.

- ``push``: after a push (embed, or score at once) and after an embedding pass.
- ``scoring``: request a scoring run, execute it (inline or a chord), write the queue, follow up.
- ``aggregation``: after labels change, the debounced aggregation, then the retrain check.
- ``training``: when to retrain, the training job's stages (train → gate → re-score), roll back.

They call the people side (``annotation.services``) and the model side (``acquisition.services``),
and start the next stage by sending a task by name (``loop.enqueue``).
"""
