"""The four outcomes of a vote: the codes the engine counts and the winner strings of the public dumps.

Every module that reads or writes an outcome takes it from here.
"""

from __future__ import annotations

A_WINS = 0
B_WINS = 1
TIE = 2
BOTH_BAD = 3

# `winner` of each outcome as the published Chatbot Arena battle dumps (clean_battle_*.json) write it.
WINNER_NAMES = {A_WINS: "model_a", B_WINS: "model_b", TIE: "tie", BOTH_BAD: "tie (bothbad)"}
WINNERS = {name: code for code, name in WINNER_NAMES.items()}
