from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("acquisition", "0004_task_stats"),
    ]

    operations = [
        migrations.AddField(
            model_name="scoringrun",
            name="heartbeat_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="trainingjob",
            name="heartbeat_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
