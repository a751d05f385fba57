"""Questions the home page offers to start from, by category: a click puts one in the prompt box,
and the visitor still sends it. A short curated list, kept in code so that it is translated with
the rest of the interface."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

SUGGESTIONS = [
    (
        _("Coding"),
        [
            _("Write a Python function that checks whether a string is a palindrome, ignoring punctuation."),
            _("Explain the difference between a process and a thread, with an example of each."),
            _(
                "Why does this query count some orders twice: SELECT c.name, COUNT(*) FROM customers c "
                "JOIN orders o ON o.customer_id = c.id JOIN payments p ON p.order_id = o.id GROUP BY c.name?"
            ),
        ],
    ),
    (
        _("Writing"),
        [
            _("Write a short, friendly email declining a meeting invitation."),
            _("Write a haiku about the first snow of winter."),
            _("Rewrite this sentence to be clearer: “The report that was written by the team was late.”"),
        ],
    ),
    (
        _("Maths"),
        [
            _("Prove that the square root of 2 is irrational."),
            _("A train leaves at 9:40 and travels 180 km at 72 km/h. When does it arrive?"),
            _("Explain Bayes’ theorem with a medical test example."),
        ],
    ),
    (
        _("Advice"),
        [
            _("How do I prepare for a job interview in a field I am new to?"),
            _("Plan a week of simple vegetarian dinners for two."),
            _("What should I check before signing a flat rental contract?"),
        ],
    ),
    (
        _("Other languages"),
        [  # prompts in other languages, so never translated
            "Explique-moi la photosynthèse comme si j’avais dix ans.",
            "¿Cuál es la diferencia entre «ser» y «estar»? Da ejemplos.",
            "Übersetze ins Englische: „Ich verstehe nur Bahnhof.“ Was bedeutet das?",
            "用三句话解释什么是区块链。",
        ],
    ),
]
