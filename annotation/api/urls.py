from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from . import views

urlpatterns = [
    path("projects", views.ProjectListCreate.as_view(), name="api-projects"),
    path("projects/<int:project_id>", views.ProjectDetail.as_view(), name="api-project"),
    path("projects/<int:project_id>/items", views.ItemListIngest.as_view(), name="api-items"),
    path("projects/<int:project_id>/ingests", views.IngestBatchList.as_view(), name="api-ingests"),
    path("projects/<int:project_id>/ingests/<int:batch_id>", views.IngestBatchDetail.as_view(), name="api-ingest"),
    path("projects/<int:project_id>/members", views.MemberListCreate.as_view(), name="api-members"),
    path("projects/<int:project_id>/members/<str:username>", views.MemberDetail.as_view(), name="api-member"),
    path("projects/<int:project_id>/next", views.NextAssignment.as_view(), name="api-next"),
    path("projects/<int:project_id>/annotations", views.ProjectAnnotationList.as_view(), name="api-annotations"),
    path(
        "assignments/<int:assignment_id>/annotation",
        views.AssignmentAnnotation.as_view(),
        name="api-assignment-annotation",
    ),
    path("assignments/<int:assignment_id>/skip", views.AssignmentSkip.as_view(), name="api-assignment-skip"),
    path("annotations/<int:annotation_id>", views.AnnotationDetail.as_view(), name="api-annotation"),
    path("annotations/<int:annotation_id>/undo", views.AnnotationUndo.as_view(), name="api-annotation-undo"),
    path("projects/<int:project_id>/reviews", views.ProjectReviewList.as_view(), name="api-reviews"),
    path("projects/<int:project_id>/reviews/next", views.ProjectReviewNext.as_view(), name="api-review-next"),
    path("projects/<int:project_id>/agreement", views.ProjectAgreement.as_view(), name="api-agreement"),
    path("projects/<int:project_id>/export", views.ProjectExport.as_view(), name="api-export"),
    path("reviews/<int:review_id>", views.ReviewDetail.as_view(), name="api-review"),
    path("reviews/<int:review_id>/resolve", views.ReviewResolve.as_view(), name="api-review-resolve"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
]
