"""Drop the vote table's change-counting triggers and their counter row: every recompute now reads
the votes by SQL aggregation, so nothing is kept between recomputes that a change could outdate.

The reverse puts back what migration 0004 made; the SQL is copied here, as it stood in 0004.
"""

import uuid

from django.db import migrations, models

READ_COLUMNS = (
    "model_a_id, model_b_id, winner, anonymous, excluded, created, language, coding, hard, "
    "long_query, multi_turn, length_a, headers_a, lists_a, bold_a, length_b, headers_b, lists_b, bold_b"
)
COUNT = "UPDATE leaderboard_votechanges SET changes = changes + 1 WHERE id = 1"

CREATE = {
    "postgresql": [
        f"CREATE FUNCTION leaderboard_count_vote_change() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN {COUNT}; RETURN NULL; END $$",
        f"CREATE TRIGGER leaderboard_vote_updated AFTER UPDATE OF {READ_COLUMNS} ON arena_vote "
        "FOR EACH STATEMENT EXECUTE FUNCTION leaderboard_count_vote_change()",
        "CREATE TRIGGER leaderboard_vote_deleted AFTER DELETE ON arena_vote "
        "FOR EACH STATEMENT EXECUTE FUNCTION leaderboard_count_vote_change()",
    ],
    "sqlite": [
        f"CREATE TRIGGER leaderboard_vote_updated AFTER UPDATE OF {READ_COLUMNS} ON arena_vote "
        f"BEGIN {COUNT}; END",
        f"CREATE TRIGGER leaderboard_vote_deleted AFTER DELETE ON arena_vote BEGIN {COUNT}; END",
    ],
}
DROP = {
    "postgresql": [
        "DROP TRIGGER IF EXISTS leaderboard_vote_updated ON arena_vote",
        "DROP TRIGGER IF EXISTS leaderboard_vote_deleted ON arena_vote",
        "DROP FUNCTION IF EXISTS leaderboard_count_vote_change()",
    ],
    "sqlite": [
        "DROP TRIGGER IF EXISTS leaderboard_vote_updated",
        "DROP TRIGGER IF EXISTS leaderboard_vote_deleted",
    ],
}


def _run(statements):
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
        ("leaderboard", "0004_vote_changes"),
    ]

    # Reversed, these run last to first: the table, its row, then the triggers that update it.
    operations = [
        migrations.RunPython(_run(DROP), _run(CREATE)),
        migrations.RunPython(migrations.RunPython.noop, first_row),
        migrations.DeleteModel(
            name="VoteChanges",
        ),
    ]
