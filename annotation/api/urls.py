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
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
]
