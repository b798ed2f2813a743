"""REST endpoints of the people side, one module per topic: thin views that check the caller's role,
then call a selector or a service (``annotation.services``). Project-scoped views use
``quorum.web.ProjectScopedMixin``; errors of the services become 4xx through
``quorum.web.exception_handler``.

- ``projects``: projects. ``items``: the pool and its pushes. ``members``: roles. ``users``: accounts.
- ``queue``: next item, submit, skip; the labels given (list, change, undo).
- ``reviews``: expert review and agreement. ``export``: the labels out.
"""
