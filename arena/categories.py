"""Tags and style counts of a battle, computed once when the vote is stored.

The tags decide which category boards count a vote. They come from a maintained language detector
and simple, documented rules rather than a model judge, so anyone can recompute them from the
public votes (`manage.py retag_votes` applies the current rules to the stored votes). A labelled
set of prompts in many languages, tests/data/prompts_labelled.jsonl, holds their accuracy.

- language: py3langid (Lui & Baldwin's langid.py, its model data shipped in the package), restricted
  to LANGUAGES and run on the first prompt without its code (fenced or inline), first also without
  its quotations (the words a request asks about are often in another language). A code is kept
  only when py3langid's probability, normalised over those languages, is at least
  LANGUAGE_MIN_CONFIDENCE: the language is more likely than all the others together. Otherwise, as
  for a prompt too short or too ambiguous to tell ("hi", "12345", a bare code block), it is ""
  (unknown), which no language board counts.
- coding: a code fence or inline code, one strong programming signal (code syntax, a traceback or
  error name, the name of a programming language or tool such as Python, SQL, CSS, pandas, Git),
  or two different weak ones (words such as "function", "class", "algorithm", "code", "program",
  in the main languages of the arena, a camelCase name, a name that is also an ordinary word such
  as Rust, Java or Swift).
- long_query: the prompts hold at least 500 tokens, counting a Chinese, Japanese or Korean character
  as one token and any other character as a quarter (OpenAI's rule of thumb for English text).
- multi_turn: the battle had more than one turn.
- hard: the prompt shows at least three of seven signs of a demanding task: specificity (numbers,
  "exactly", "at least"), explicit constraints ("must", "never", "without"), a problem to solve
  ("prove", "derive", "design", "implement", "calculate", …), a technical domain, a request for
  reasoning (step by step, trade-offs, justify, compare), a real-world setting (our company, the
  customer, production) and a length over 80 tokens. These mirror the criteria behind Chatbot
  Arena's "hard prompts" category, judged by rules instead of a model; the words are listed in
  the main languages of the arena.

Style counts follow the public Chatbot Arena battle format (`conv_metadata`): tokens of each
side's answers, markdown headers (h1–h6), list items (ordered, unordered) and bold spans, all
counted after code blocks are removed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from py3langid.langid import MODEL_FILE, LanguageIdentifier

LONG_QUERY_TOKENS = 500
CHARS_PER_TOKEN = 4
HARD_MIN_SIGNS = 3
HARD_LENGTH_TOKENS = 80

# The languages with a board of their own (leaderboard.boards.LANGUAGE_NAMES), then neighbours the
# detector must be able to name so that their prompts are not filed under a board language
# (Ukrainian under Russian, Polish or Swedish under a Germanic or Romance one).
LANGUAGES = "en fr de es it pt nl ru zh ja ko ar hi el he th pl uk cs ro hu sv da fi tr vi id fa".split()
LANGUAGE_MIN_CONFIDENCE = 0.5
# The detector's cost grows with the text; the opening of a long paste tells its language.
LANGUAGE_MAX_CHARS = 4000

_CODE = re.compile(r"```.*?(?:```|$)|`[^`\n]+`", re.DOTALL)
# Quoted words, which a request often asks about in another language ("What does 'je ne sais quoi'
# mean?"); an apostrophe inside a word (l'automne) opens no quotation.
_QUOTED = re.compile(r"""(?<!\w)['‘"“«„][^\n'‘’"“”«»„]{1,200}?['’"”»“](?!\w)""")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


# Letters of the scripts that put spaces between words: a word in them ends where these end, so that
# "Python" is found in 用Python写 but "rust" not in "trust".
_LETTER = r"A-Za-z0-9_\u00c0-\u024f\u0370-\u03ff\u0400-\u04ff"


def _signal(words: str, unspaced: str = "") -> re.Pattern[str]:
    """Whole words and stems (`\\w*`) of scripts that space their words, or terms of those that don't."""
    pattern = rf"(?<![{_LETTER}])(?:{words})(?![{_LETTER}])"
    if unspaced:
        pattern += f"|{unspaced}"
    return re.compile(pattern, re.IGNORECASE)


_CODE_STRONG = [
    re.compile(p, re.IGNORECASE | re.MULTILINE)
    for p in (
        r"\bdef \w+\(",
        r"#include\b",
        r"\bselect\b.+\bfrom\b",
        r"traceback \(most recent call last\)",
        r"\b\w+(Error|Exception):",
        r"\bpublic static\b",
        r"\w+\.\w+\([^)]*\)",  # a method call: np.arange(10)
        r"[{}]\s*$",
        r"=>|::",
        r"segmentation fault|segfault|stack trace|null pointer|core dumped",
    )
] + [
    _signal(
        r"python|javascript|typescript|c\+\+|c#|sql|postgres(ql)?|mysql|sqlite|bash|regex|html|css|kotlin|"
        r"golang|php|numpy|pandas|django|flask|node\.js|git|docker|kubernetes|redis|kafka|json|yaml|jquery|"
        r"webpack|pytorch|tensorflow|powershell|haskell|matlab|fortran|cobol|파이썬|자바스크립트|بايثون|पायथन|פייתון"
    )
]
_CODE_WEAK = [
    _signal(
        r"functions?|fonctions?|funktion(en)?|funci[oó]n\w*|funzion\w*|fun[çc][ãa]o\w*|functie\w*|"
        r"функци\w*|συνάρτησ\w*|دالة|फ़?ंक्शन|פונקצי\w*|"
        r"class(es)?|classe\w*|klasse\w*|clase\w*|класс\w*|code|c[oó]dig[oe]\w*|codice|код|кода|коде|"
        r"program(s|ming|me|mes|ma|mas|mm|mmi|mmieren|mmierung)?|programa[cç]\w*|программ\w*|"
        r"algorithm\w*|algorithme\w*|algoritm\w*|алгоритм\w*|compil\w*|debug\w*|bug|api|scripts?|"
        r"variab\w*|loop|lus|bucle|boucle|schleife|ciclo|цикл\w*|לולאה|arrays?|"
        r"dictionar\w*|dictionnaire|dizionario|словар\w*|딕셔너리|hello world|time complexity|big-o|"
        r"binary search|java|rust|swift|ruby|lua|react|go(?= (code|program|service|routine))|"
        r"database\w*|datenbank\w*|base de (donn[ée]es|datos)|banco de dados|база данных|"
        r"server\w*|serveur\w*|servidor\w*|сервер\w*|서버|interface|implement\w*|implémente\w*|"
        r"distributed|distribu[ií]d[oa]s?|verteilte\w*|함수|코드|프로그램|알고리즘|배열|데이터베이스",
        r"函数|代码|程序|算法|数组|编程|数据库|服务器|分布式|関数|コード|プログラム|アルゴリズム|配列|"
        r"エラー|データベース|サーバ",
    ),
    re.compile(r"\bO\([a-z0-9 ^*+]+\)"),  # big-O: O(n log n)
    re.compile(r";\s*$", re.MULTILINE),  # a statement's end (a Greek question ends so too: weak)
    re.compile(r"\b[a-z]+[A-Z][a-z]+[A-Za-z]*\b"),  # a camelCase name: useMemo
    re.compile(r"\w+\.(py|js|ts|java|rs|go|cpp|c|h|rb|php|sh|sql|html|css|json|yaml|yml)\b"),
]

_HARD_SIGNS = {
    "specific": _signal(
        r"exactly|precisely|specific|at least|at most|no more than|au moins|au plus|exactement|"
        r"mindestens|höchstens|genau|al menos|como máximo|exactamente|almeno|al massimo|esattamente|"
        r"pelo menos|no máximo|exatamente|minstens|hoogstens|precies|не менее|не более|как минимум|ровно",
        r"\d|至少|最多|以上|以下|少なくとも|최소|이상",
    ),
    "constraints": _signal(
        r"must|should|without|only|do not|don't|never|ensure|require[sd]?|"
        r"doi[tv]\w*|jamais|sans|seulement|muss\w*|darf|nie|niemals|ohne|nur|"
        r"deb[eo]\w*|nunca|sin|solo|dev[eo]\w*|mai|senza|sem|apenas|moet\w*|nooit|zonder|alleen|"
        r"должн\w*|никогда|без|только|нельзя|πρέπει|χωρίς|يجب|بدون|חייב\w*|בלי",
        r"必须|不能|不得|绝不|不依赖|必要があ|絶対|許されず|해야|절대|안 됩니다|안 되",
    ),
    "problem": _signal(
        r"prove|derive|optimi[sz]e|design|implement\w*|solve|calculat\w*|debug|analy[sz]e|"
        r"démontr\w*|prouve[rz]?|conçoi\w*|implément\w*|calcul\w*|résou\w*|analyse[rz]?|"
        r"beweis\w*|leite|herleit\w*|entwirf|entwerfen|berechne\w*|löse|analysiere\w*|"
        r"demuestr\w*|demostr\w*|diseñ\w*|resuelv\w*|anali[zc]\w*|dimostr\w*|progett\w*|risolv\w*|"
        r"calcol\w*|demonstr\w*|projete|projetar|bewijs\w*|ontwerp\w*|bereken\w*|"
        r"доказ\w*|докажи|реализу\w*|спроектиру\w*|рассчита\w*|выведи|проанализиру\w*|أثبت|صمم|احسب",
        r"证明|推导|设计|实现|计算|分析|証明|設計|実装|計算|導出|증명|설계|구현|계산|분석",
    ),
    "domain": _signal(
        r"theorem|equation|quantum|protein|compiler|kernel|database|statistic\w*|econom\w*|legal|"
        r"clinical|irrational\w*|primes?\b|probabilit\w*|variance|distributed|consisten\w*|"
        r"idempoten\w*|throughput|latency|thread-?safe|lock-free|concurren\w*|partition\w*|"
        r"théorème|équation|irrationnel\w*|juridique|base de données|"
        r"gleichung\w*|datenbank\w*|\w*rechtlich\w*|primzahl\w*|varianz|verteilt\w*|"
        r"teorema|ecuaci\w*|equazion\w*|equação|base de datos|banco de dados|jur[ií]dic\w*|"
        r"primos?\b|primi\b|irracional\w*|irrazional\w*|distribuid\w*|distribuit\w*|consistenci\w*|"
        r"vergelijking\w*|priemgetal\w*|induct\w*|inducti\w*|indukti\w*|индукц\w*|"
        r"теорем\w*|уравнен\w*|баз\w* данных|юридич\w*|иррациональн\w*|простых|потокобезопасн\w*|"
        r"غير نسبي|نظرية",
        r"定理|方程|数据库|分布式|无理数|素数|データベース|二重計上|데이터베이스|트랜잭션",
    ),
    "reasoning": _signal(
        r"step by step|explain why|reason\w*|trade-?offs?|compare|justify|assum\w*|each step|every step|"
        r"étape par étape|justifie\w*|compromis|compar\w*|explique pourquoi|"
        r"schritt für schritt|begründe\w*|kompromiss\w*|vergleich\w*|erkläre warum|"
        r"paso a paso|justific\w*|compromiso\w*|passo dopo passo|passo a passo|giustific\w*|"
        r"compromess\w*|compromissos|stap voor stap|afweging\w*|vergelijk\w*|"
        r"шаг за шагом|обоснуй\w*|компромисс\w*|сравни\w*|объясни каждый|каждый шаг|خطوة",
        r"逐步|一步一步|权衡|理由|比较|段階的|トレードオフ|比較|단계별|트레이드오프|비교",
    ),
    "real_world": _signal(
        r"my|our|company|client|production|project|team|customer\w*|"
        r"notre|nos|entreprise|clients?|équipe|projet|unser\w*|unternehmen|firma|kunde\w*|projekt|"
        r"nuestr[oa]s?|empresa|cliente\w*|equipo|proyecto|nostr[oa]|azienda|squadra|progetto|"
        r"noss[oa]s?|equipe|projeto|onze|bedrijf|klant\w*|"
        r"наш\w*|компани\w*|клиент\w*|проект\w*",
        r"我们|公司|客户|项目|当社|弊社|会社|顧客|우리|회사|고객|프로젝트",
    ),
}

_FENCE = re.compile(r"```.*?(```|$)", re.DOTALL)
_HEADER = re.compile(r"^(#{1,6})\s+\S", re.MULTILINE)
_ORDERED = re.compile(r"^\s*\d+\.\s+\S", re.MULTILINE)
_UNORDERED = re.compile(r"^\s*[-*+]\s+\S", re.MULTILINE)
_BOLD_STARS = re.compile(r"\*\*[^*\n]+\*\*")
_BOLD_UNDERSCORES = re.compile(r"__[^_\n]+__")


@dataclass(frozen=True)
class Tags:
    language: str
    coding: bool
    long_query: bool
    multi_turn: bool
    hard: bool


@cache
def _identifier() -> LanguageIdentifier:
    """py3langid's model, read from the package once per process (no download)."""
    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    identifier.set_languages(LANGUAGES)
    return identifier


def language(text: str) -> str:
    """The prompt's language code, or "" when it cannot be told with confidence.

    The words around quotations decide first; the whole prose when they alone are not enough.
    """
    prose = _CODE.sub(" ", text)[:LANGUAGE_MAX_CHARS]
    if not any(c.isalpha() for c in prose):
        return ""
    for candidate in dict.fromkeys((_QUOTED.sub(" ", prose), prose)):
        code, confidence = _identifier().classify(candidate)
        if confidence >= LANGUAGE_MIN_CONFIDENCE:
            return code
    return ""


def tokens(text: str) -> float:
    """Tokens by rule of thumb: a Chinese, Japanese or Korean character is about one, four other
    characters are about one."""
    cjk = len(_CJK.findall(text))
    return cjk + (len(text) - cjk) / CHARS_PER_TOKEN


def is_coding(text: str) -> bool:
    if _CODE.search(text) or any(signal.search(text) for signal in _CODE_STRONG):
        return True
    found = {m.group(0).lower() for signal in _CODE_WEAK for m in signal.finditer(text)}
    return len(found) >= 2


def is_hard(text: str) -> bool:
    signs = sum(1 for pattern in _HARD_SIGNS.values() if pattern.search(text))
    signs += tokens(text) > HARD_LENGTH_TOKENS
    return signs >= HARD_MIN_SIGNS


def tags(prompts: list[str]) -> Tags:
    joined = "\n\n".join(prompts)
    return Tags(
        language=language(prompts[0]) if prompts else "",
        coding=is_coding(joined),
        long_query=tokens(joined) >= LONG_QUERY_TOKENS,
        multi_turn=len(prompts) > 1,
        hard=is_hard(joined),
    )


def _style(text: str) -> dict[str, Any]:
    prose = _FENCE.sub("", text)
    headers = _HEADER.findall(prose)
    return {
        "tokens": round(len(text) / CHARS_PER_TOKEN),
        "header_count": {f"h{n}": sum(1 for h in headers if len(h) == n) for n in range(1, 7)},
        "list_count": {"ordered": len(_ORDERED.findall(prose)), "unordered": len(_UNORDERED.findall(prose))},
        "bold_count": {"**": len(_BOLD_STARS.findall(prose)), "__": len(_BOLD_UNDERSCORES.findall(prose))},
    }


def conv_metadata(answers_a: list[str], answers_b: list[str]) -> dict[str, Any]:
    """Style counts of both sides in the public battle format's `conv_metadata` shape."""
    a, b = _style("\n\n".join(answers_a)), _style("\n\n".join(answers_b))
    return {
        "sum_assistant_a_tokens": a["tokens"],
        "sum_assistant_b_tokens": b["tokens"],
        "header_count_a": a["header_count"],
        "header_count_b": b["header_count"],
        "list_count_a": a["list_count"],
        "list_count_b": b["list_count"],
        "bold_count_a": a["bold_count"],
        "bold_count_b": b["bold_count"],
    }
