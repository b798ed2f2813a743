from django.urls import path

from . import views

urlpatterns = [
    path("projects/<int:project_id>/scoring-runs", views.ScoringRunListCreate.as_view(), name="api-scoring-runs"),
    path(
        "projects/<int:project_id>/scoring-runs/<int:run_id>", views.ScoringRunDetail.as_view(), name="api-scoring-run"
    ),
    path("projects/<int:project_id>/model-versions", views.ModelVersionList.as_view(), name="api-model-versions"),
]
