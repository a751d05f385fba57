import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("arena", "0004_vote_facts")]

    operations = [
        migrations.AlterField(
            "vote",
            "model_a",
            models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="providers.llm",
            ),
        ),
        migrations.AlterField(
            "vote",
            "model_b",
            models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="providers.llm",
            ),
        ),
    ]
