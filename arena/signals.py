"""What the arena tells the apps that read it; the arena imports none of them."""

from __future__ import annotations

from django.dispatch import Signal

# Sent by the vote service (`arena.services.after_vote`) in the vote's transaction, with `vote`.
# A receiver that acts on the committed vote queues its work with `transaction.on_commit`.
vote_recorded = Signal()
