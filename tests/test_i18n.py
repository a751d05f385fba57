"""The translation catalogues: complete in every shipped language, placeholders and markup intact,
up to date with the sources, and compiled.

When a test here fails after you added or changed an interface string, CONTRIBUTING.md
("Interface strings") says what to run and where to write the translations.
"""

from __future__ import annotations

import gettext
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from django.conf import settings
from django.utils.translation import to_locale

from config import po

ROOT = Path(__file__).resolve().parent.parent
LOCALE = ROOT / "locale"
DOMAINS = ("django", "djangojs")
# Every language of the switcher but the one the sources are written in.
SHIPPED = [to_locale(code) for code, _ in settings.LANGUAGES if code != "en"]
CATALOGUES = [(locale, domain) for locale in SHIPPED for domain in DOMAINS]
# Placeholders a translation must keep: Python/JS named and positional ones, a literal %% (of a
# python-format string), {name} (str.format), and the HTML tags with their attributes.
PLACEHOLDER = re.compile(r"%\(\w+\)[sdif]|%[sdif%]|\{\w*\}|</?[a-z][^>]*>")


def catalogue(locale: str, domain: str, root: Path = LOCALE) -> Path:
    return root / locale / "LC_MESSAGES" / f"{domain}.po"


def untranslated(path: Path) -> list[str]:
    return [e.msgid for e in po.parse(path) if e.msgid and not e.translated]


def report(problems: dict[str, list[str]], what: str) -> str:
    lines = [f"{what} (see CONTRIBUTING.md, 'Interface strings'):"]
    for where, msgids in problems.items():
        lines += [f"  {where}: {len(msgids)}"] + [f"    msgid {m!r}" for m in msgids]
    return "\n".join(lines)


def test_every_shipped_language_has_both_catalogues() -> None:
    assert SHIPPED == ["fr", "zh_Hans"]
    for locale, domain in CATALOGUES:
        assert catalogue(locale, domain).is_file(), catalogue(locale, domain)


def test_every_string_is_translated_in_every_shipped_language() -> None:
    problems = {}
    for locale, domain in CATALOGUES:
        missing = untranslated(catalogue(locale, domain))
        if missing:
            problems[f"locale/{locale}/LC_MESSAGES/{domain}.po"] = missing
    assert not problems, report(problems, "Strings with an empty or fuzzy translation")


def test_translations_keep_the_placeholders_and_markup_of_their_source() -> None:
    problems: dict[str, list[str]] = {}
    for locale, domain in CATALOGUES:
        for entry in po.parse(catalogue(locale, domain)):
            if not entry.msgid or not entry.translated:
                continue
            sources = [entry.msgid] if entry.msgid_plural is None else [entry.msgid, entry.msgid_plural]
            wanted = Counter(PLACEHOLDER.findall(sources[-1]))
            for form in entry.msgstr:
                got = Counter(PLACEHOLDER.findall(form))
                # A plural form may leave the count out ("one vote" is "un vote"), never add one.
                ok = got == wanted or (entry.msgid_plural is not None and got <= wanted)
                if not ok:
                    problems.setdefault(f"{locale}/{domain}", []).append(
                        f"{entry.msgid} -> {form}  (wants {sorted(wanted)}, has {sorted(got)})"
                    )
    assert not problems, report(problems, "Translations whose placeholders or tags differ from the msgid")


def test_the_placeholder_check_catches_a_dropped_or_renamed_placeholder() -> None:
    def same(a: str, b: str) -> bool:
        return Counter(PLACEHOLDER.findall(a)) == Counter(PLACEHOLDER.findall(b))

    assert same("Up to %(limit)s <kbd>characters</kbd>", "最多 %(limit)s <kbd>字符</kbd>")
    assert not same("Up to %(limit)s characters", "Jusqu’à %(limite)s caractères")
    assert not same("Up to %(limit)s characters", "Jusqu’à caractères")
    assert not same("95%% CI", "IC 95 %")
    assert not same('<a href="%(url)s">terms</a>', "conditions")
    assert not same("{n} left", "{count} restants")


@pytest.mark.skipif(shutil.which("xgettext") is None, reason="GNU gettext (xgettext) is not installed")
def test_the_catalogues_hold_every_string_of_the_sources(tmp_path: Path) -> None:
    """makemessages, run on a copy of the project, finds no string the catalogues lack."""
    skip = shutil.ignore_patterns(
        ".*",
        "__pycache__",
        "*.pyc",
        "*.mo",
        "tests",
        "vendor",
        "staticfiles",
        "node_modules",
        "docs",
        "bench",
        "db.sqlite3*",
        "*.log",
    )
    copy = tmp_path / "project"
    shutil.copytree(ROOT, copy, ignore=skip, symlinks=True)
    languages = [arg for locale in SHIPPED for arg in ("-l", locale)]
    for domain in DOMAINS:
        subprocess.run(
            [sys.executable, "manage.py", "makemessages", *languages, "-d", domain, "--no-obsolete",
             "--ignore=.venv", "--ignore=static/vendor", "--verbosity=0"],
            cwd=copy, check=True, capture_output=True, timeout=300,
        )  # fmt: skip
    problems = {}
    for locale, domain in CATALOGUES:
        missing = untranslated(catalogue(locale, domain, copy / "locale"))
        if missing:
            problems[f"locale/{locale}/LC_MESSAGES/{domain}.po"] = missing
    assert not problems, report(
        problems,
        "Interface strings in the sources that the catalogues do not translate yet (run make makemessages)",
    )


def compiled(locale: str, domain: str) -> gettext.GNUTranslations:
    mo = catalogue(locale, domain).with_suffix(".mo")
    assert mo.is_file(), f"{mo} is missing: run `make messages` (make run and make test do)"
    with mo.open("rb") as handle:
        return gettext.GNUTranslations(handle)


@pytest.mark.parametrize(("locale", "domain"), CATALOGUES)
def test_the_compiled_catalogues_are_those_of_the_po_files(locale: str, domain: str) -> None:
    translations = compiled(locale, domain)
    stale = []
    for entry in po.parse(catalogue(locale, domain)):
        if not entry.msgid or not entry.translated:
            continue
        if entry.msgid_plural is None:
            got = [translations.gettext(entry.msgid)]
        else:  # one and many: the first form and the last in both French and Chinese
            got = [translations.ngettext(entry.msgid, entry.msgid_plural, n) for n in (1, 5)]
            entry.msgstr = [entry.msgstr[0], entry.msgstr[-1]]
        if got != entry.msgstr:
            stale.append(entry.msgid)
    assert not stale, report({f"{locale}/{domain}.mo": stale}, "Stale .mo file: run `make messages`")


def test_the_pure_python_compiler_writes_what_gettext_reads(tmp_path: Path) -> None:
    source = tmp_path / "x.po"
    source.write_text(
        '# header\nmsgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n'
        '"Plural-Forms: nplurals=2; plural=(n > 1);\\n"\n\n'
        '#: a.py\nmsgid "Hello \\"you\\"\\n"\nmsgstr "Bonjour "\n"« vous »\\n"\n\n'
        '#, fuzzy\nmsgid "Guess"\nmsgstr "Devine"\n\n'
        'msgid "Empty"\nmsgstr ""\n\n'
        'msgctxt "verb"\nmsgid "Stop"\nmsgstr "Arrêter"\n\n'
        'msgid "%(n)s vote"\nmsgid_plural "%(n)s votes"\n'
        'msgstr[0] "%(n)s vote"\nmsgstr[1] "%(n)s votes (fr)"\n\n'
        '#~ msgid "Old"\n#~ msgstr "Vieux"\n',
        encoding="utf-8",
    )
    entries = po.parse(source)
    assert [e.msgid for e in entries] == ["", 'Hello "you"\n', "Guess", "Empty", "Stop", "%(n)s vote"]
    assert entries[2].fuzzy and not entries[2].translated and not entries[3].translated
    mo = tmp_path / "x.mo"
    po.write_mo(entries, mo)
    with mo.open("rb") as handle:
        t = gettext.GNUTranslations(handle)
    assert t.gettext('Hello "you"\n') == "Bonjour « vous »\n"
    assert t.gettext("Guess") == "Guess" and t.gettext("Empty") == "Empty"  # left out, as msgfmt does
    assert t.pgettext("verb", "Stop") == "Arrêter" and t.gettext("Stop") == "Stop"
    assert t.ngettext("%(n)s vote", "%(n)s votes", 1) == "%(n)s vote"
    assert t.ngettext("%(n)s vote", "%(n)s votes", 2) == "%(n)s votes (fr)"
    assert t.gettext("Old") == "Old"


def test_the_pure_python_compiler_refuses_a_broken_catalogue(tmp_path: Path) -> None:
    broken = tmp_path / "broken.po"
    broken.write_text('msgid "a"\nmsgstr not quoted\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken\.po:2"):
        po.parse(broken)


@pytest.mark.skipif(shutil.which("msgfmt") is None, reason="GNU gettext (msgfmt) is not installed")
@pytest.mark.parametrize(("locale", "domain"), CATALOGUES)
def test_the_pure_python_compiler_agrees_with_msgfmt(tmp_path: Path, locale: str, domain: str) -> None:
    source = catalogue(locale, domain)
    ours, theirs = tmp_path / "ours.mo", tmp_path / "theirs.mo"
    po.write_mo(po.parse(source), ours)
    subprocess.run(["msgfmt", "-o", str(theirs), str(source)], check=True, timeout=60)
    # The same catalogue (msgfmt adds a hash table, so the bytes differ): header and every string.
    with ours.open("rb") as a, theirs.open("rb") as b:
        mine, gnu = gettext.GNUTranslations(a), gettext.GNUTranslations(b)
    header = {k: v for k, v in mine.info().items() if k != "pot-creation-date"}  # msgfmt drops it
    assert header == gnu.info()
    for entry in po.parse(source)[1:]:  # after the header
        if entry.msgid_plural is None:
            assert mine.gettext(entry.msgid) == gnu.gettext(entry.msgid)
        else:
            for n in (1, 2, 5):
                assert mine.ngettext(entry.msgid, entry.msgid_plural, n) == gnu.ngettext(
                    entry.msgid, entry.msgid_plural, n
                )


def test_no_page_script_declares_gettext_at_its_top_level() -> None:
    # Classic scripts share one top-level scope: a second `const gettext` there is a SyntaxError
    # that stops that whole file. Each file declares it inside its own function (IIFE).
    clashing = [
        path.name
        for path in sorted((ROOT / "static" / "arena").glob("*.js"))
        if re.search(
            r"^(?:const|let|var|function)\s+(?:gettext|ngettext|interpolate)\b", path.read_text(), re.M
        )
    ]
    assert not clashing, f"move the gettext declaration inside the file's IIFE: {clashing}"


def test_every_page_script_puts_its_strings_through_gettext() -> None:
    # A file that shows text declares the fallback, so that the catalogue's absence never breaks it.
    for name in ("battle.js", "render.js", "privacy.js", "pow.js"):
        text = (ROOT / "static" / "arena" / name).read_text()
        assert "const gettext = window.gettext || ((s) => s);" in text, name
