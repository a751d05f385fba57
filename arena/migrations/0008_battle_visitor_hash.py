"""The voter's identity is the visitor: `Battle.session_hash` becomes `visitor_hash` (same values,
same index)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("arena", "0007_vote_metadata"),
    ]

    operations = [
        migrations.RenameField(model_name="battle", old_name="session_hash", new_name="visitor_hash"),
    ]
