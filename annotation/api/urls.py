from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from .views import export, items, members, projects, queue, reviews, users

urlpatterns = [
    path("users", users.UserCreate.as_view(), name="api-users"),
    path("auth/token", users.TokenObtain.as_view(), name="api-token"),
    path("projects", projects.ProjectListCreate.as_view(), name="api-projects"),
    path("projects/<int:project_id>", projects.ProjectDetail.as_view(), name="api-project"),
    path("projects/<int:project_id>/items", items.ItemListIngest.as_view(), name="api-items"),
    path("projects/<int:project_id>/ingests", items.IngestBatchList.as_view(), name="api-ingests"),
    path("projects/<int:project_id>/ingests/<int:batch_id>", items.IngestBatchDetail.as_view(), name="api-ingest"),
    path("projects/<int:project_id>/members", members.MemberListCreate.as_view(), name="api-members"),
    path("projects/<int:project_id>/members/<str:username>", members.MemberDetail.as_view(), name="api-member"),
    path(
        "projects/<int:project_id>/members/<str:username>/reinstate",
        members.MemberReinstate.as_view(),
        name="api-member-reinstate",
    ),
    path("projects/<int:project_id>/next", queue.NextAssignment.as_view(), name="api-next"),
    path("projects/<int:project_id>/annotations", queue.ProjectAnnotationList.as_view(), name="api-annotations"),
    path(
        "assignments/<int:assignment_id>/annotation",
        queue.AssignmentAnnotation.as_view(),
        name="api-assignment-annotation",
    ),
    path("assignments/<int:assignment_id>/skip", queue.AssignmentSkip.as_view(), name="api-assignment-skip"),
    path("annotations/<int:annotation_id>", queue.AnnotationDetail.as_view(), name="api-annotation"),
    path("annotations/<int:annotation_id>/undo", queue.AnnotationUndo.as_view(), name="api-annotation-undo"),
    path("projects/<int:project_id>/reviews", reviews.ProjectReviewList.as_view(), name="api-reviews"),
    path("projects/<int:project_id>/reviews/next", reviews.ProjectReviewNext.as_view(), name="api-review-next"),
    path("projects/<int:project_id>/agreement", reviews.ProjectAgreement.as_view(), name="api-agreement"),
    path("projects/<int:project_id>/export", export.ProjectExport.as_view(), name="api-export"),
    path("reviews/<int:review_id>", reviews.ReviewDetail.as_view(), name="api-review"),
    path("reviews/<int:review_id>/resolve", reviews.ReviewResolve.as_view(), name="api-review-resolve"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
]
