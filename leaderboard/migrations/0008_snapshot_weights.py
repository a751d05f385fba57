from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("leaderboard", "0007_rank_range"),
    ]

    operations = [
        migrations.AddField(
            model_name="snapshot",
            name="weights",
            field=models.CharField(
                choices=[("none", "none"), ("propensity", "propensity"), ("pair-frequency", "pair-frequency")],
                default="none",
                help_text="Per-vote weights of the fit: none, propensity (inverse) or pair-frequency (inverse).",
                max_length=16,
            ),
        ),
    ]
