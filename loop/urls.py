from django.urls import path

from . import views

urlpatterns = [
    path("projects/<int:project_id>/dashboard", views.project_dashboard, name="dashboard"),
    path(
        "projects/<int:project_id>/dashboard/members/<str:username>/reinstate",
        views.member_reinstate,
        name="dashboard-reinstate",
    ),
    path("projects/<int:project_id>/models", views.models_page, name="models"),
    path("projects/<int:project_id>/models/train", views.train_now, name="models-train"),
    path("projects/<int:project_id>/models/<int:version>/promote", views.promote, name="models-promote"),
]
