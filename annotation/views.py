"""Browser pages of the annotation app (the labelling page itself comes with the queue)."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from . import selectors


@login_required
def home(request):
    projects = list(selectors.projects_for_user(request.user).order_by("name"))
    roles = selectors.roles_by_project(request.user, projects)
    rows = [
        {"project": project, "role": roles.get(project.pk), "counts": selectors.item_counts(project)}
        for project in projects
    ]
    return render(request, "annotation/home.html", {"rows": rows})
