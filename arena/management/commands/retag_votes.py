from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from arena import categories
from arena.models import Turn, Vote

FIELDS = ("language", "coding", "long_query", "multi_turn", "hard")


class Command(BaseCommand):
    help = (
        "Tag the stored votes again with the current rules of arena.categories, in batches; "
        "a second run changes nothing. Votes without their prompts (imported, or erased at the "
        "visitor's request) keep their tags."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=2000, help="votes read and written at a time")
        parser.add_argument("--dry-run", action="store_true", help="count the changes, write nothing")

    def handle(self, *args: Any, batch_size: int, dry_run: bool, **options: Any) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        changed: Counter[str] = Counter()
        read = skipped = retagged = last = 0
        # Keyset batches in primary-key order: each is one short read and one bulk update, so a
        # table of millions never sits in memory and votes cast meanwhile are never held up.
        batches = Vote.objects.order_by("pk").only("pk", "battle_id", *FIELDS)
        while votes := list(batches.filter(pk__gt=last)[:batch_size]):
            last = votes[-1].pk
            read += len(votes)
            prompts = _prompts(votes)
            stale = []
            for vote in votes:
                if not any(prompts[vote.battle_id]):
                    skipped += 1
                    continue
                tags = asdict(categories.tags(prompts[vote.battle_id]))
                fields = [field for field in FIELDS if getattr(vote, field) != tags[field]]
                if fields:
                    for field in fields:
                        setattr(vote, field, tags[field])
                    changed.update(fields)
                    stale.append(vote)
            retagged += len(stale)
            if stale and not dry_run:
                Vote.objects.bulk_update(stale, FIELDS)
        counts = ", ".join(f"{field} {changed[field]}" for field in FIELDS)
        self.stdout.write(
            f"{'Would re-tag' if dry_run else 'Re-tagged'} {retagged} of {read} votes ({counts}); "
            f"{skipped} without their prompts kept their tags."
        )
        if retagged and not dry_run:
            self.stdout.write("Run recompute_leaderboard, or wait for the next recompute, to see the boards.")


def _prompts(votes: list[Vote]) -> defaultdict[Any, list[str]]:
    """The prompts of each vote's battle, turn by turn."""
    prompts: defaultdict[Any, list[str]] = defaultdict(list)
    turns = Turn.objects.filter(battle_id__in={v.battle_id for v in votes}).order_by("battle_id", "index")
    for battle_id, prompt in turns.values_list("battle_id", "prompt"):
        prompts[battle_id].append(prompt)
    return prompts
