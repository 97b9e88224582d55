#!/usr/bin/env python3
"""Compile smtp_guard's gettext catalogs: every ``locale/*/LC_MESSAGES/*.po`` -> ``.mo``.

A small msgfmt of our own (no Babel or gettext tools needed). It reads the subset of the PO
format the catalogs use: comments, ``msgctxt``, ``msgid``, ``msgstr`` and continued strings
with C escapes. Plural forms are refused with a clear error. Entries marked ``#, fuzzy`` are
left out of the .mo, as msgfmt does. The output is byte-for-byte deterministic, so a test can
check the committed .mo files against their .po files.

    python scripts/compile_catalogs.py           # (re)write the .mo files
    python scripts/compile_catalogs.py --check   # exit 1 if any .mo is stale
"""

from __future__ import annotations

import argparse
import ast
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

LOCALE_DIR = Path(__file__).resolve().parent.parent / "smtp_guard" / "locale"
_MAGIC = 0x950412DE


class PoError(ValueError):
    """The .po file is not in the subset of the format we read."""


@dataclass
class Entry:
    """One catalog entry as written in the .po file."""

    msgid: str
    msgstr: str
    msgctxt: str | None = None
    comments: list[str] = field(default_factory=list)  #: "#." extracted comments
    fuzzy: bool = False
    line: int = 0


def _unquote(token: str, where: str) -> str:
    if len(token) < 2 or token[0] != '"' or token[-1] != '"':
        raise PoError(f"{where}: expected a quoted string, got {token[:40]!r}")
    try:
        value = ast.literal_eval(token)
    except (SyntaxError, ValueError) as exc:
        raise PoError(f"{where}: bad string {token[:40]!r}: {exc}") from None
    if not isinstance(value, str):  # pragma: no cover - a quoted literal is always a str
        raise PoError(f"{where}: bad string {token[:40]!r}")
    return value


class _Reader:
    """Reads a .po file line by line into entries."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.entries: list[Entry] = []
        self.fields: dict[str, str] = {}
        self.comments: list[str] = []
        self.fuzzy = False
        self.current: str | None = None
        self.start = 0

    def finish(self) -> None:
        """Close the entry being read, if any."""
        if self.fields:
            if "msgid" not in self.fields or "msgstr" not in self.fields:
                raise PoError(f"{self.name}:{self.start}: an entry needs both msgid and msgstr")
            self.entries.append(
                Entry(
                    self.fields["msgid"],
                    self.fields["msgstr"],
                    self.fields.get("msgctxt"),
                    self.comments,
                    self.fuzzy,
                    self.start,
                )
            )
        # Comments with no entry after them are ignored, as msgfmt does.
        self.fields, self.comments, self.fuzzy, self.current = {}, [], False, None

    def comment(self, line: str) -> None:
        if self.fields:
            self.finish()
        if line.startswith("#,") and "fuzzy" in (f.strip() for f in line[2:].split(",")):
            self.fuzzy = True
        elif line.startswith("#."):
            self.comments.append(line[2:].strip())

    def continued(self, line: str, where: str) -> None:
        if self.current is None:
            raise PoError(f"{where}: a continued string with nothing to continue")
        self.fields[self.current] += _unquote(line, where)

    def keyword(self, line: str, where: str) -> None:
        keyword, _, rest = line.partition(" ")
        if keyword == "msgid_plural" or keyword.startswith("msgstr["):
            raise PoError(f"{where}: plural forms are not supported by this compiler")
        if keyword not in ("msgctxt", "msgid", "msgstr"):
            raise PoError(f"{where}: unknown keyword {keyword[:20]!r}")
        if keyword in self.fields or (keyword != "msgstr" and "msgstr" in self.fields):
            self.finish()
        if not self.fields:
            self.start = int(where.rsplit(":", 1)[1])
        self.fields[keyword] = _unquote(rest.strip(), where)
        self.current = keyword


def parse_po(text: str, name: str = "<po>") -> list[Entry]:
    """Parse a .po file into its entries (the header is the entry with msgid "")."""
    reader = _Reader(name)
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        where = f"{name}:{number}"
        if not line:
            reader.finish()
        elif line.startswith("#~"):
            continue  # an obsolete entry
        elif line.startswith("#"):
            reader.comment(line)
        elif line.startswith('"'):
            reader.continued(line, where)
        else:
            reader.keyword(line, where)
    reader.finish()
    seen: set[tuple[str | None, str]] = set()
    for entry in reader.entries:
        key = (entry.msgctxt, entry.msgid)
        if key in seen:
            raise PoError(f"{name}:{entry.line}: duplicate msgid {entry.msgid!r}")
        seen.add(key)
    return reader.entries


def compile_entries(entries: list[Entry]) -> bytes:
    """The GNU .mo bytes for ``entries`` (fuzzy and untranslated ones left out)."""
    pairs: dict[bytes, bytes] = {}
    for entry in entries:
        if (entry.fuzzy and entry.msgid) or not entry.msgstr:
            continue
        key = entry.msgid if entry.msgctxt is None else f"{entry.msgctxt}\x04{entry.msgid}"
        pairs[key.encode("utf-8")] = entry.msgstr.encode("utf-8")
    keys = sorted(pairs)
    header_size = 7 * 4
    originals_at = header_size
    translations_at = originals_at + len(keys) * 8
    strings_at = translations_at + len(keys) * 8
    originals: list[tuple[int, int]] = []
    translations: list[tuple[int, int]] = []
    blob = bytearray()
    for table, values in ((originals, keys), (translations, [pairs[k] for k in keys])):
        for value in values:
            table.append((len(value), strings_at + len(blob)))
            blob += value + b"\0"
    # No hash table (size 0); its offset points past the tables, as msgfmt --no-hash writes.
    out = bytearray(
        struct.pack("<7I", _MAGIC, 0, len(keys), originals_at, translations_at, 0, strings_at)
    )
    for length, offset in originals + translations:
        out += struct.pack("<2I", length, offset)
    return bytes(out + blob)


def compile_po(text: str, name: str = "<po>") -> bytes:
    """Parse and compile the text of one .po file."""
    return compile_entries(parse_po(text, name))


def catalogs(locale_dir: Path = LOCALE_DIR) -> list[Path]:
    """Every .po file under ``locale_dir``, sorted."""
    return sorted(locale_dir.glob("*/LC_MESSAGES/*.po"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if stale")
    parser.add_argument("--locale-dir", type=Path, default=LOCALE_DIR)
    args = parser.parse_args(argv)
    stale = []
    for po in catalogs(args.locale_dir):
        mo = po.with_suffix(".mo")
        try:
            compiled = compile_po(po.read_text(encoding="utf-8"), str(po))
        except PoError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if mo.exists() and mo.read_bytes() == compiled:
            continue
        stale.append(mo)
        if not args.check:
            mo.write_bytes(compiled)
            print(f"wrote {mo}")
    if args.check and stale:
        for mo in stale:
            print(f"stale: {mo} (run scripts/compile_catalogs.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
