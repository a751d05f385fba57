from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from providers.api import ledger_rules
from providers.ledger import testing_ledger


def ledger_page(request: HttpRequest) -> HttpResponse:
    return render(request, "providers/ledger.html", {"ledger": testing_ledger(), "rules": ledger_rules()})
