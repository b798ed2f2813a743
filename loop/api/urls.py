from django.urls import path

from . import views

urlpatterns = [
    path("projects/<int:project_id>/scoring-runs", views.ScoringRunListCreate.as_view(), name="api-scoring-runs"),
    path(
        "projects/<int:project_id>/scoring-runs/<int:run_id>", views.ScoringRunDetail.as_view(), name="api-scoring-run"
    ),
    path("projects/<int:project_id>/model-versions", views.ModelVersionList.as_view(), name="api-model-versions"),
    path(
        "projects/<int:project_id>/model-versions/<int:version>",
        views.ModelVersionDetail.as_view(),
        name="api-model-version",
    ),
    path(
        "projects/<int:project_id>/model-versions/<int:version>/promote",
        views.ModelVersionPromote.as_view(),
        name="api-model-version-promote",
    ),
    path(
        "projects/<int:project_id>/model-versions/<int:version>/weights",
        views.ModelVersionWeights.as_view(),
        name="api-model-version-weights",
    ),
    path("projects/<int:project_id>/training", views.TrainingStatus.as_view(), name="api-training-status"),
    path("projects/<int:project_id>/jobs", views.ProjectJobs.as_view(), name="api-jobs"),
    path("projects/<int:project_id>/training-jobs", views.TrainingJobListCreate.as_view(), name="api-training-jobs"),
    path(
        "projects/<int:project_id>/training-jobs/<int:job_id>",
        views.TrainingJobDetail.as_view(),
        name="api-training-job",
    ),
]
