"""A row counting changes to stored votes, kept by triggers on arena_vote (see models.VoteChanges)."""

import uuid

from django.db import migrations, models

# The vote columns a recompute reads (leaderboard.votes): a change to any other leaves its tables
# valid.
READ_COLUMNS = (
    "model_a_id, model_b_id, winner, anonymous, excluded, created, language, coding, hard, "
    "long_query, multi_turn, length_a, headers_a, lists_a, bold_a, length_b, headers_b, lists_b, bold_b"
)
COUNT = "UPDATE leaderboard_votechanges SET changes = changes + 1 WHERE id = 1"

# PostgreSQL: once per statement, however many votes it touched.
POSTGRESQL = [
    f"CREATE FUNCTION leaderboard_count_vote_change() RETURNS trigger LANGUAGE plpgsql AS "
    f"$$ BEGIN {COUNT}; RETURN NULL; END $$",
    f"CREATE TRIGGER leaderboard_vote_updated AFTER UPDATE OF {READ_COLUMNS} ON arena_vote "
    "FOR EACH STATEMENT EXECUTE FUNCTION leaderboard_count_vote_change()",
    "CREATE TRIGGER leaderboard_vote_deleted AFTER DELETE ON arena_vote "
    "FOR EACH STATEMENT EXECUTE FUNCTION leaderboard_count_vote_change()",
]
POSTGRESQL_REVERSE = [
    "DROP TRIGGER IF EXISTS leaderboard_vote_updated ON arena_vote",
    "DROP TRIGGER IF EXISTS leaderboard_vote_deleted ON arena_vote",
    "DROP FUNCTION IF EXISTS leaderboard_count_vote_change()",
]
# SQLite has row triggers only: once per vote changed.
SQLITE = [
    f"CREATE TRIGGER leaderboard_vote_updated AFTER UPDATE OF {READ_COLUMNS} ON arena_vote "
    f"BEGIN {COUNT}; END",
    f"CREATE TRIGGER leaderboard_vote_deleted AFTER DELETE ON arena_vote BEGIN {COUNT}; END",
]
SQLITE_REVERSE = [
    "DROP TRIGGER IF EXISTS leaderboard_vote_updated",
    "DROP TRIGGER IF EXISTS leaderboard_vote_deleted",
]


def _run(statements: dict[str, list[str]]):
    def run(apps, schema_editor):
        for sql in statements.get(schema_editor.connection.vendor, []):
            schema_editor.execute(sql)

    return run


def first_row(apps, schema_editor):
    apps.get_model("leaderboard", "VoteChanges").objects.using(schema_editor.connection.alias).create(
        pk=1, token=uuid.uuid4().hex
    )


class Migration(migrations.Migration):
    dependencies = [
        ("leaderboard", "0003_snapshot_details"),
        ("arena", "0006_vote_partial_indexes"),
    ]

    operations = [
        migrations.CreateModel(
            name="VoteChanges",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("token", models.CharField(max_length=32)),
                ("changes", models.BigIntegerField(default=0)),
            ],
        ),
        migrations.RunPython(first_row, migrations.RunPython.noop),
        migrations.RunPython(
            _run({"postgresql": POSTGRESQL, "sqlite": SQLITE}),
            _run({"postgresql": POSTGRESQL_REVERSE, "sqlite": SQLITE_REVERSE}),
        ),
    ]
