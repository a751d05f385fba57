from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from providers.api import ledger_rules


def ledger_page(request: HttpRequest) -> HttpResponse:
    from leaderboard.services import testing_ledger  # providers does not import arena

    return render(request, "providers/ledger.html", {"ledger": testing_ledger(), "rules": ledger_rules()})
