from __future__ import annotations

from django.urls import path

from providers import api, views

urlpatterns = [
    path("testing-ledger/", views.ledger_page, name="testing-ledger"),
    path("api/v1/testing-ledger/", api.TestingLedgerApi.as_view(), name="testing-ledger-api"),
    path("api/v1/provider/variants/", api.VariantsApi.as_view(), name="provider-variants"),
    path(
        "api/v1/provider/variants/<str:variant_id>/", api.VariantDetailApi.as_view(), name="provider-variant"
    ),
    path(
        "api/v1/provider/variants/<str:variant_id>/publish/",
        api.VariantPublishApi.as_view(),
        name="provider-variant-publish",
    ),
    path(
        "api/v1/provider/variants/<str:variant_id>/retire/",
        api.VariantRetireApi.as_view(),
        name="provider-variant-retire",
    ),
]
