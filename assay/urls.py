from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from django.views.generic import RedirectView

from assay.api import api, unknown_endpoint

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="activity:list", permanent=False)),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("activity/", include("activity.urls")),
    path("datastores/", include("activity.datastore_urls")),
    path("teams/", include("accounts.urls")),
    path("", include("datastores.urls")),
    path("api/v1/", api.urls),
    re_path(r"^api/", unknown_endpoint),  # JSON, not the HTML 404 page, for API clients
    path("admin/", admin.site.urls),
]
