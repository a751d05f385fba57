"""Gettext catalogues in pure Python: reads .po files and writes .mo files.

`make messages` compiles with it where GNU gettext's msgfmt (which `manage.py compilemessages`
needs) is missing, so a fresh clone gets its translations either way; tests/test_i18n.py reads
the catalogues with it. Run as `python -m config.po [LOCALE_DIR ...]`.
"""

from __future__ import annotations

import ast
import struct
import sys
from array import array
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Entry:
    msgid: str
    msgstr: list[str] = field(default_factory=list)  # one string, or one per plural form
    msgid_plural: str | None = None
    msgctxt: str | None = None
    flags: set[str] = field(default_factory=set)

    @property
    def fuzzy(self) -> bool:
        return "fuzzy" in self.flags

    @property
    def translated(self) -> bool:
        return bool(self.msgstr) and all(self.msgstr) and not self.fuzzy


def parse(path: Path) -> list[Entry]:
    """The entries of a .po file, header (msgid "") first; obsolete (#~) entries are left out."""
    entries: list[Entry] = []
    entry: Entry | None = None
    flags: set[str] = set()
    key = ""  # the keyword the next continuation line extends

    def finish() -> None:
        nonlocal entry
        if entry is not None:
            entries.append(entry)
        entry = None

    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#~"):
            continue
        if line.startswith("#"):
            if entry is not None and entry.msgstr:
                finish()
            if line.startswith("#,"):
                flags |= {flag.strip() for flag in line[2:].split(",")}
            continue
        word, _, rest = line.partition(" ")
        if line.startswith('"'):
            word, rest = key, line
        try:
            text = ast.literal_eval(rest.strip())
        except (ValueError, SyntaxError):
            raise ValueError(f"{path}:{number}: not a quoted string: {raw!r}") from None
        if word in ("msgctxt", "msgid") and (entry is None or entry.msgstr) and not line.startswith('"'):
            finish()
            entry = Entry(msgid="", flags=flags)
            flags = set()
        if entry is None:
            raise ValueError(f"{path}:{number}: {word} outside an entry")
        if word == "msgctxt":
            entry.msgctxt = (entry.msgctxt or "") + text
        elif word == "msgid":
            entry.msgid += text
        elif word == "msgid_plural":
            entry.msgid_plural = (entry.msgid_plural or "") + text
        elif word == "msgstr" or word.startswith("msgstr["):
            if key != word:
                entry.msgstr.append("")
            entry.msgstr[-1] += text
        else:
            raise ValueError(f"{path}:{number}: unknown keyword {word!r}")
        key = word
    finish()
    return entries


def write_mo(entries: list[Entry], path: Path) -> None:
    """The .mo of these entries (GNU's format, as CPython's Tools/i18n/msgfmt.py writes it):
    fuzzy and untranslated entries left out, as msgfmt does, the header kept."""
    pairs: dict[bytes, bytes] = {}
    for entry in entries:
        if entry.msgid and not entry.translated:
            continue
        key = entry.msgid if entry.msgid_plural is None else entry.msgid + "\0" + entry.msgid_plural
        if entry.msgctxt is not None:
            key = entry.msgctxt + "\x04" + key
        pairs[key.encode()] = "\0".join(entry.msgstr).encode()
    keys = sorted(pairs)
    ids = strs = b""
    offsets = []
    for key in keys:
        offsets.append((len(ids), len(key), len(strs), len(pairs[key])))
        ids += key + b"\0"
        strs += pairs[key] + b"\0"
    keys_start = 7 * 4 + 16 * len(keys)
    values_start = keys_start + len(ids)
    table = []
    for id_offset, id_length, _, _ in offsets:
        table += [id_length, id_offset + keys_start]
    for _, _, str_offset, str_length in offsets:
        table += [str_length, str_offset + values_start]
    header = struct.pack("Iiiiiii", 0x950412DE, 0, len(keys), 7 * 4, 7 * 4 + len(keys) * 8, 0, 0)
    path.write_bytes(header + array("i", table).tobytes() + ids + strs)


def compile_all(locale_dir: Path) -> list[Path]:
    """Compiles each .po under locale_dir whose .mo is missing or older; the .mo files written."""
    written = []
    for po in sorted(locale_dir.glob("*/LC_MESSAGES/*.po")):
        mo = po.with_suffix(".mo")
        if not mo.exists() or mo.stat().st_mtime < po.stat().st_mtime:
            write_mo(parse(po), mo)
            written.append(mo)
    return written


if __name__ == "__main__":
    for directory in sys.argv[1:] or ["locale"]:
        for mo in compile_all(Path(directory)):
            print(f"compiled {mo}")
