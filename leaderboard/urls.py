from __future__ import annotations

from django.urls import path

from leaderboard import views

urlpatterns = [
    path("leaderboard/", views.board_page, name="leaderboard"),
    path("api/v1/leaderboard/", views.LeaderboardApi.as_view(), name="leaderboard-api"),
    path("api/v1/leaderboard/snapshots/", views.SnapshotListApi.as_view(), name="snapshot-list-api"),
    path("api/v1/leaderboard/snapshots/<int:snapshot_id>/votes", views.snapshot_votes, name="snapshot-votes"),
    path("api/v1/leaderboard/snapshots/<int:snapshot_id>/csv", views.snapshot_csv, name="snapshot-csv"),
]
