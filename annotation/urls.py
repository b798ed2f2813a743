from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("projects/<int:project_id>/label", views.label, name="label"),
    path("projects/<int:project_id>/review", views.review, name="review"),
    path("projects/<int:project_id>/members", views.members, name="members"),
    path("accounts/invite/<uidb64>/<token>/", views.InvitationAccept.as_view(), name="invite"),
]
