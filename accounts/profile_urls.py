from django.urls import path

from accounts import admin_views as views

app_name = "profile"

urlpatterns = [
    path("", views.profile, name="home"),
    path("tokens/<int:token_id>/revoke/", views.token_revoke, name="token-revoke"),
]
