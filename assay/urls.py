from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import URLPattern, URLResolver, include, path, re_path
from django.views.generic import RedirectView

from accounts.views import preferences
from assay.api import api, unknown_endpoint
from monitoring import views as monitoring

handler400 = "assay.views.bad_request"
handler500 = "assay.views.server_error"


def build_urlpatterns(admin_url: str) -> list[URLPattern | URLResolver]:
    """Assay's pages and API; the Django admin only under a path an operator chose."""
    patterns = [
        path("", RedirectView.as_view(pattern_name="activity:list", permanent=False)),
        path("healthz", monitoring.healthz, name="healthz"),
        path("metrics", monitoring.metrics, name="metrics"),
        path("login/", auth_views.LoginView.as_view(), name="login"),
        path("logout/", auth_views.LogoutView.as_view(), name="logout"),
        path("activity/", include("activity.urls")),
        path("datastores/", include("activity.datastore_urls")),
        path("datastores/", include("notifications.urls")),
        path("teams/", include("accounts.urls")),
        path("preferences/", preferences, name="preferences"),
        path("users/", include("accounts.user_urls")),
        path("account/", include("accounts.profile_urls")),
        path(
            "set-password/<uidb64>/<token>/",
            auth_views.PasswordResetConfirmView.as_view(
                success_url="/set-password/done/", reset_url_token="set"
            ),
            name="set-password",
        ),
        path("set-password/done/", auth_views.PasswordResetCompleteView.as_view(),
             name="password_reset_complete"),
        path("audit/", include("audit.urls")),
        path("schedules/", include("runs.schedule_urls")),
        path("", include("datastores.urls")),
        path("api/v1/", api.urls),
        re_path(r"^api/", unknown_endpoint),  # JSON, not the HTML 404 page, for API clients
    ]
    if admin_url:
        patterns.append(path(f"{admin_url.strip('/')}/", admin.site.urls))
    return patterns


urlpatterns = build_urlpatterns(settings.ADMIN_URL)
