"""User-facing explanations: the shipped gettext catalogs and smtp_guard.i18n.explain()."""

from __future__ import annotations

import doctest
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import smtp_guard
from smtp_guard import errors, i18n
from smtp_guard._enums import Category
from smtp_guard.classify import error_from_reply
from smtp_guard.i18n import _locale_candidates, available_locales, explain, explanation_id

ROOT = Path(__file__).resolve().parent.parent
LOCALE_DIR = Path(smtp_guard.__file__).parent / "locale"
SHIPPED = ("cs", "de", "en", "fr")


def _load_compiler() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "compile_catalogs", ROOT / "scripts" / "compile_catalogs.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


compiler = _load_compiler()

# Non-reply errors with their own text; every other non-reply class inherits one of these.
OWN_TEXT = [
    "SMTPGuardError",
    "ConnectionFailed",
    "SMTPTimeout",
    "TLSFailed",
    "InsecureConnection",
    "InvalidInput",
    "ProtocolError",
    "DeliveryUncertain",
    "RecipientsRefused",
]
NON_REPLY: list[Any] = [
    obj
    for name in errors.__all__
    if isinstance(obj := getattr(errors, name), type)
    and issubclass(obj, errors.SMTPGuardError)
    and not issubclass(obj, errors.ReplyError)
]
EXPECTED_IDS = {f"category.{c.value}" for c in Category} | {f"error.{n}" for n in OWN_TEXT}


def _po_path(lang: str) -> Path:
    return LOCALE_DIR / lang / "LC_MESSAGES" / "smtp_guard.po"


def _entries(lang: str) -> dict[str, object]:
    parsed = compiler.parse_po(_po_path(lang).read_text(encoding="utf-8"), lang)
    return {e.msgid: e for e in parsed if e.msgid}


def _texts(lang: str) -> dict[str, str]:
    return {k: e.msgstr for k, e in _entries(lang).items()}  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- the catalogs


def test_the_four_languages_are_shipped() -> None:
    assert available_locales() == SHIPPED


@pytest.mark.parametrize("lang", SHIPPED)
def test_catalog_is_complete_and_has_no_stale_ids(lang: str) -> None:
    entries = _entries(lang)
    missing = EXPECTED_IDS - set(entries)
    unknown = set(entries) - EXPECTED_IDS
    assert missing == set(), f"{lang} lacks {sorted(missing)}"
    assert unknown == set(), f"{lang} has stale/unknown ids {sorted(unknown)}"
    for msgid, entry in entries.items():
        assert entry.msgstr.strip(), f"{lang}: {msgid} is untranslated"  # type: ignore[attr-defined]
        assert not entry.fuzzy, f"{lang}: {msgid} is fuzzy"  # type: ignore[attr-defined]


@pytest.mark.parametrize("lang", SHIPPED)
def test_catalog_header_declares_utf8_and_its_language(lang: str) -> None:
    header = compiler.parse_po(_po_path(lang).read_text(encoding="utf-8"))[0]
    assert header.msgid == ""
    assert "charset=UTF-8" in header.msgstr
    assert f"Language: {lang}\n" in header.msgstr


@pytest.mark.parametrize("lang", [lang for lang in SHIPPED if lang != "en"])
def test_each_translation_is_of_the_current_english_text(lang: str) -> None:
    """The '#.' comment holds the English it was translated from: stale if English changed."""
    english = _texts("en")
    for msgid, entry in _entries(lang).items():
        assert entry.comments == [english[msgid]], (  # type: ignore[attr-defined]
            f"{lang}: {msgid} was translated from an older English text"
        )


@pytest.mark.parametrize("lang", SHIPPED)
def test_committed_mo_matches_its_po(lang: str) -> None:
    po = _po_path(lang)
    assert po.with_suffix(".mo").read_bytes() == compiler.compile_po(
        po.read_text(encoding="utf-8")
    ), "run: python scripts/compile_catalogs.py"


@pytest.mark.skipif(shutil.which("msgfmt") is None, reason="GNU gettext is not installed")
@pytest.mark.parametrize("lang", SHIPPED)
def test_our_compiler_writes_what_gnu_msgfmt_writes(lang: str, tmp_path: Path) -> None:
    out = tmp_path / "gnu.mo"
    subprocess.run(  # noqa: S603 - fixed arguments, our own file
        ["msgfmt", "--no-hash", "--check-format", "-o", str(out), str(_po_path(lang))],  # noqa: S607
        check=True,
        capture_output=True,
    )
    assert out.read_bytes() == _po_path(lang).with_suffix(".mo").read_bytes()


def test_compile_script_check_mode_passes_on_the_committed_tree() -> None:
    assert compiler.main(["--check"]) == 0


def test_compile_script_check_mode_fails_on_a_stale_mo(tmp_path: Path) -> None:
    target = tmp_path / "xx" / "LC_MESSAGES"
    target.mkdir(parents=True)
    (target / "smtp_guard.po").write_text(
        'msgid ""\nmsgstr "Content-Type: text/plain; charset=UTF-8\\n"\n\nmsgid "a"\nmsgstr "b"\n',
        encoding="utf-8",
    )
    (target / "smtp_guard.mo").write_bytes(b"old")
    assert compiler.main(["--check", "--locale-dir", str(tmp_path)]) == 1
    assert compiler.main(["--locale-dir", str(tmp_path)]) == 0
    assert compiler.main(["--check", "--locale-dir", str(tmp_path)]) == 0


def test_po_parser_reads_continuations_escapes_context_and_fuzzy() -> None:
    text = (
        '#. a comment\nmsgctxt "ctx"\nmsgid "one"\nmsgstr ""\n"two \\"quoted\\"\\n"\n"three"\n\n'
        '#, fuzzy\nmsgid "skip"\nmsgstr "not used"\n'
    )
    first, fuzzy = compiler.parse_po(text)
    assert (first.msgctxt, first.msgid, first.msgstr) == ("ctx", "one", 'two "quoted"\nthree')
    assert first.comments == ["a comment"]
    assert fuzzy.fuzzy
    assert b"not used" not in compiler.compile_entries([first, fuzzy])


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('msgid "a"\nmsgid_plural "as"\nmsgstr[0] "x"\n', "plural"),
        ('msgid "a"\n', "both msgid and msgstr"),
        ('msgid "a"\nmsgstr "x"\n\nmsgid "a"\nmsgstr "y"\n', "duplicate"),
        ('msgid a\nmsgstr "x"\n', "quoted string"),
        ('"orphan"\n', "nothing to continue"),
        ('msgfoo "a"\n', "unknown keyword"),
    ],
)
def test_po_parser_refuses_what_it_does_not_read(text: str, problem: str) -> None:
    with pytest.raises(compiler.PoError, match=problem):
        compiler.parse_po(text)


# --------------------------------------------------------------------------- the language


@pytest.mark.parametrize("lang", SHIPPED)
def test_texts_are_short_plain_sentences_for_a_user(lang: str) -> None:
    for msgid, text in _texts(lang).items():
        assert text == text.strip()
        assert "  " not in text
        assert text.endswith("."), (lang, msgid)
        assert 1 <= len(re.findall(r"[.!?](?:\s|$)", text)) <= 3, (lang, msgid)
        assert len(text) <= 260, (lang, msgid)
        # No SMTP jargon a mail app user would not know.
        assert not re.search(r"\b[245]\d\d\b|\b[245]\.\d+\.\d+\b", text), (lang, msgid)
        assert not re.search(r"\b(SMTP|RCPT|MAIL FROM|EHLO|MX|DNS)\b", text), (lang, msgid)


@pytest.mark.parametrize("lang", ["cs", "de", "fr"])
def test_translations_are_translated(lang: str) -> None:
    english = _texts("en")
    same = [k for k, v in _texts(lang).items() if v == english[k]]
    assert same == []


def test_czech_is_written_with_its_diacritics() -> None:
    czech = " ".join(_texts("cs").values())
    for word in ("příjemce", "Zkuste", "poštovní", "schránka", "zprávu", "heslo", "později"):
        assert word.lower() in czech.lower(), word
    # Czech words commonly misspelt without diacritics must not appear.
    for wrong in ("prijemce", "postovni", "schranka", "zpravu", "pozdeji", "znova"):
        assert wrong not in czech.lower(), wrong


def test_german_uses_the_formal_address_and_its_letters() -> None:
    german = " ".join(_texts("de").values())
    assert "Sie" in german
    assert not re.search(r"\b(du|dein|deine)\b", german)
    assert "ü" in german
    assert "ß" in german


def test_french_uses_its_accents_and_spacing() -> None:
    french = " ".join(_texts("fr").values())
    for word in ("Réessayez", "boîte", "pièces jointes", "sécurisée"):
        assert word in french, word
    assert " ;" not in french  # a no-break space goes before ";" and ":"
    assert " :" not in french


# --------------------------------------------------------------------------- explain()


@pytest.mark.parametrize("written", ["cs", "cs_CZ", "cs-CZ", "cs-CZ.UTF-8", "CS", "cs_CZ@euro"])
def test_locale_spellings(written: str) -> None:
    assert explain(Category.MAILBOX_FULL, written) == _texts("cs")["category.mailbox_full"]


@pytest.mark.parametrize("unknown", ["xx", "", None, "C", "POSIX", "klingon!", "de_", "e"])
def test_unknown_locale_falls_back_to_english(unknown: str | None) -> None:
    assert explain(Category.MAILBOX_FULL, unknown) == _texts("en")["category.mailbox_full"]


def test_regional_variant_uses_the_language() -> None:
    assert explain("greylisted", "de_AT") == _texts("de")["category.greylisted"]
    assert explain("greylisted", "fr-CA") == _texts("fr")["category.greylisted"]


def test_normalize_locale() -> None:
    assert _locale_candidates("cs-CZ.UTF-8") == ["cs_CZ", "cs"]
    assert _locale_candidates("de") == ["de"]
    assert _locale_candidates("es_419") == ["es_419", "es"]
    assert _locale_candidates(None) == []
    assert _locale_candidates("not a locale") == []
    # An HTTP Accept-Language header, as a web mail app receives it.
    assert _locale_candidates("de-AT,de;q=0.9,en;q=0.5") == ["de_AT", "de", "en"]
    assert _locale_candidates("en;q=0.2, fr-CA ,cs;q=0.8") == ["fr_CA", "fr", "cs", "en"]
    assert _locale_candidates("xx;q=bad,*;q=0.1") == ["xx"]


def test_accept_language_picks_the_first_shipped_language() -> None:
    assert (
        explain("mailbox_full", "sk-SK,sk;q=0.9,cs;q=0.8,en;q=0.5")
        == (_texts("cs")["category.mailbox_full"])
    )


@pytest.mark.parametrize("lang", SHIPPED)
def test_every_category_and_error_is_explained_in_every_language(lang: str) -> None:
    texts = _texts(lang)
    for category in Category:
        assert explain(category, lang) == texts[f"category.{category.value}"]
        assert explain(category.value, lang) == texts[f"category.{category.value}"]
    assert len(NON_REPLY) >= 12
    for cls in NON_REPLY:
        err: errors.SMTPGuardError = (
            errors.RecipientsRefused({})
            if cls is errors.RecipientsRefused
            else cls("something happened")
        )
        assert explain(err, lang) in texts.values()
        assert explain(err, lang) == texts[explanation_id(err)]


def test_subclasses_use_their_nearest_parent_text() -> None:
    assert explanation_id(errors.ConnectTimeout("x")) == "error.SMTPTimeout"
    assert explanation_id(errors.ReadTimeout("x")) == "error.SMTPTimeout"
    assert explanation_id(errors.ServerDisconnected("x")) == "error.ConnectionFailed"
    assert explanation_id(errors.DeliveryUncertain("x")) == "error.DeliveryUncertain"

    class LocalError(errors.InvalidInput):
        pass

    assert explanation_id(LocalError("x")) == "error.InvalidInput"


def test_reply_errors_are_explained_by_their_category() -> None:
    err = error_from_reply(552, "5.2.2 Mailbox full", "rcpt", "bob@example.com")
    assert explain(err, "cs") == _texts("cs")[f"category.{err.category.value}"]
    full = errors.MailboxFull(452, "4.2.2 Over quota")
    assert explain(full, "fr") == _texts("fr")["category.mailbox_full"]
    assert explain(full) == _texts("en")["category.mailbox_full"]


def test_explain_refuses_what_it_cannot_explain() -> None:
    with pytest.raises(ValueError, match="unknown category 'nope'"):
        explain("nope")
    with pytest.raises(TypeError, match="not ValueError"):
        explain(ValueError("x"))  # type: ignore[arg-type]


def test_catalogs_are_inside_the_package_so_the_wheel_ships_them() -> None:
    for lang in SHIPPED:
        po = _po_path(lang)
        assert po.is_file()
        assert po.with_suffix(".mo").is_file()
        assert po.resolve().is_relative_to(Path(smtp_guard.__file__).parent.resolve())


def test_doctests() -> None:
    failures, tried = doctest.testmod(i18n)
    assert tried >= 1
    assert failures == 0
