from __future__ import annotations

from django.urls import path

from arena import battle_images, share_views, views, visitor_views

urlpatterns = [
    path("", views.battle_page, name="battle"),
    path("named/", views.named_page, name="named"),
    path("chat/", views.chat_page, name="chat"),
    path("s/<str:token>/", share_views.shared_page, name="shared-battle"),
    path("b/<str:battle_id>/", views.battle_resume_page, name="battle-page"),
    path("api/v1/challenge/", views.ChallengeApi.as_view(), name="challenge"),
    path("api/v1/battles/", views.BattleCreateApi.as_view(), name="battle-create"),
    path("api/v1/battles/<str:battle_id>/", views.BattleDetailApi.as_view(), name="battle-detail"),
    path("api/v1/battles/<str:battle_id>/image", battle_images.BattleImageApi.as_view(), name="battle-image"),
    path("api/v1/battles/<str:battle_id>/stream", views.battle_stream, name="battle-stream"),
    path("api/v1/battles/<str:battle_id>/turns/", views.BattleTurnCreateApi.as_view(), name="battle-turn"),
    path("api/v1/battles/<str:battle_id>/vote/", views.BattleVoteApi.as_view(), name="battle-vote"),
    path("api/v1/battles/<str:battle_id>/retry/", views.BattleRetryApi.as_view(), name="battle-retry"),
    path(
        "api/v1/battles/<str:battle_id>/regenerate/",
        views.BattleRegenerateApi.as_view(),
        name="battle-regenerate",
    ),
    path("api/v1/battles/<str:battle_id>/share/", share_views.BattleShareApi.as_view(), name="battle-share"),
    path("api/v1/battles/<str:battle_id>/stop/", views.BattleStopApi.as_view(), name="battle-stop"),
    path("api/v1/models/", views.ModelListApi.as_view(), name="model-list"),
    path("terms/", visitor_views.terms_page, name="terms"),
    path("privacy/", visitor_views.privacy_page, name="privacy"),
    path("api/v1/visitor/consent", visitor_views.VisitorConsentApi.as_view(), name="visitor-consent"),
    path("api/v1/visitor/data", visitor_views.VisitorDataApi.as_view(), name="visitor-data"),
    path("api/v1/visitor/battles", views.VisitorBattleListApi.as_view(), name="visitor-battles"),
]
