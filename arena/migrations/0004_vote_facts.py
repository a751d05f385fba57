"""Copy each vote's battle mode, models and style counts onto the vote (see Vote.set_facts)."""

import django.db.models.deletion
from django.db import migrations, models

STYLE = ("length", "headers", "lists", "bold")
BATCH = 2000
# Per style feature, the conv_metadata keys of answer A and answer B.
STYLE_KEYS = (
    ("sum_assistant_a_tokens", "sum_assistant_b_tokens"),
    ("header_count_a", "header_count_b"),
    ("list_count_a", "list_count_b"),
    ("bold_count_a", "bold_count_b"),
)


def style_counts(metadata):
    """[a-side, b-side] counts of STYLE from a conv_metadata dict: this migration's own copy of
    arena.style.style_counts, so that a later change there cannot change what this step does."""
    metadata = metadata if isinstance(metadata, dict) else {}
    sides = [[], []]
    for keys in STYLE_KEYS:
        for side, key in zip(sides, keys, strict=True):
            value = metadata.get(key)
            parts = value.values() if isinstance(value, dict) else [value]
            side.append(float(sum(p for p in parts if isinstance(p, int | float) and not isinstance(p, bool))))
    return sides


def copy_facts(apps, schema_editor):
    Vote = apps.get_model("arena", "Vote")
    schema_editor.execute(
        "UPDATE arena_vote SET "
        "anonymous = (SELECT mode = 'anonymous' FROM arena_battle WHERE id = arena_vote.battle_id), "
        "model_a_id = (SELECT model_a_id FROM arena_battle WHERE id = arena_vote.battle_id), "
        "model_b_id = (SELECT model_b_id FROM arena_battle WHERE id = arena_vote.battle_id)"
    )
    columns = [f"{feature}_{side}" for side in "ab" for feature in STYLE]
    last = 0
    while True:
        votes = list(Vote.objects.filter(id__gt=last).order_by("id")[:BATCH])
        if not votes:
            break
        for vote in votes:
            a, b = style_counts(vote.conv_metadata)
            for column, value in zip(columns, a + b, strict=True):
                setattr(vote, column, value)
        Vote.objects.bulk_update(votes, columns)
        last = votes[-1].id


class Migration(migrations.Migration):
    dependencies = [
        ("arena", "0003_vote_categories"),
        ("providers", "0004_imported_backend"),
    ]

    operations = [
        migrations.AddField("vote", "anonymous", models.BooleanField(default=True)),
        migrations.AddField(
            "vote",
            "model_a",
            models.ForeignKey(
                null=True,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="providers.llm",
            ),
        ),
        migrations.AddField(
            "vote",
            "model_b",
            models.ForeignKey(
                null=True,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="providers.llm",
            ),
        ),
        *[
            migrations.AddField("vote", f"{feature}_{side}", models.FloatField(default=0))
            for side in "ab"
            for feature in STYLE
        ],
        migrations.RunPython(copy_facts, migrations.RunPython.noop, elidable=True),
    ]
