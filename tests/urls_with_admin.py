"""Assay's URL map as an operator gets it with ADMIN_URL=admin (the Django admin mounted)."""

from assay.urls import build_urlpatterns

urlpatterns = build_urlpatterns("admin")
