"""User-facing, localized explanations of smtp_guard errors.

``err.hint`` speaks to the developer. :func:`explain` speaks to the person using a mail app:
what happened and what to do, in their language, with no SMTP jargon::

    >>> explain(Category.MAILBOX_BUSY, "cs-CZ.UTF-8")
    'Schránka příjemce je dočasně nedostupná. Zkuste to znovu později.'

The texts live in gettext catalogs shipped in the package
(``smtp_guard/locale/<lang>/LC_MESSAGES/smtp_guard.po`` and the compiled ``.mo``). Their
message ids (:func:`explanation_id`) are ``category.<value>`` for reply errors (by their
:class:`Category`) and ``error.<class name>`` for the other errors; a subclass without its own
text uses its nearest parent's (``ConnectTimeout`` -> ``SMTPTimeout``). An app with its own
translations can key them by the same ids.
"""

from __future__ import annotations

import functools
import gettext
import re
import sys
from importlib import resources
from typing import TYPE_CHECKING

from smtp_guard._enums import Category
from smtp_guard.errors import ReplyError, SMTPGuardError

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from importlib.resources.abc import Traversable
    else:
        from importlib.abc import Traversable

__all__ = ["available_locales", "explain", "explanation_id"]

DOMAIN = "smtp_guard"
DEFAULT_LOCALE = "en"

# "cs", "cs_CZ", "cs-CZ.UTF-8", "sr_RS@latin", "C", "POSIX".
_LOCALE = re.compile(
    r"^(?P<lang>[A-Za-z]{2,3})(?:[_-](?P<region>[A-Za-z]{2}|\d{3}))?(?:\.[\w-]+)?(?:@\w+)?$"
)


def _locale_candidates(locale: str | None) -> list[str]:
    """The catalog names to try for ``locale``, most specific first.

    ``"cs-CZ.UTF-8"`` -> ``["cs_CZ", "cs"]``. An HTTP Accept-Language value is read in its
    order of preference: ``"de-AT,de;q=0.9,en;q=0.5"`` -> ``["de_AT", "de", "en"]``.
    Anything unrecognisable (or None, "C", "POSIX") gives ``[]``, which means English.
    """
    if not locale:
        return []
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate(locale.split(",")):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        ranked.append((-quality, position, tag.strip()))
    found: list[str] = []
    for _, _, tag in sorted(ranked):
        match = _LOCALE.match(tag)
        if match is None:
            continue
        lang = match["lang"].lower()
        region = match["region"]
        for name in [f"{lang}_{region.upper()}", lang] if region else [lang]:
            if name not in found:
                found.append(name)
    return found


def _locale_root() -> Traversable:
    return resources.files("smtp_guard").joinpath("locale")


@functools.cache
def available_locales() -> tuple[str, ...]:
    """The languages with a catalog shipped in the package, sorted (e.g. ``("cs", "de", ...)``)."""
    root = _locale_root()
    found = [
        entry.name
        for entry in root.iterdir()
        if entry.joinpath("LC_MESSAGES").joinpath(f"{DOMAIN}.mo").is_file()
    ]
    return tuple(sorted(found))


@functools.cache
def _catalog(name: str) -> gettext.GNUTranslations | None:
    if name not in available_locales():
        return None
    with (
        _locale_root()
        .joinpath(name)
        .joinpath("LC_MESSAGES")
        .joinpath(f"{DOMAIN}.mo")
        .open("rb") as fp
    ):
        return gettext.GNUTranslations(fp)


def _translations(locale: str | None) -> list[gettext.GNUTranslations]:
    """The catalogs to consult in order: the requested language's, then English."""
    found = [c for c in (_catalog(n) for n in _locale_candidates(locale)) if c is not None]
    english = _catalog(DEFAULT_LOCALE)
    if english is not None and english not in found:
        found.append(english)
    return found


def explanation_id(subject: SMTPGuardError | Category | str) -> str:
    """The catalog message id for an error, a category or a category value.

    Reply errors go by their category; other errors by the nearest class in their MRO that
    has a text (checked against the English catalog), down to ``error.SMTPGuardError``.
    """
    if isinstance(subject, ReplyError):
        return f"category.{subject.category.value}"
    if isinstance(subject, SMTPGuardError):
        english = _catalog(DEFAULT_LOCALE)
        for klass in type(subject).__mro__:
            candidate = f"error.{klass.__name__}"
            if english is not None and english.gettext(candidate) != candidate:
                return candidate
            if klass is SMTPGuardError:
                break
        return "error.SMTPGuardError"
    if isinstance(subject, str):
        try:
            return f"category.{Category(subject).value}"
        except ValueError:
            names = ", ".join(c.value for c in Category)
            raise ValueError(
                f"unknown category {subject[:40]!r}; expected one of: {names}"
            ) from None
    raise TypeError(
        f"explain() takes an smtp_guard error or a Category, not {type(subject).__name__}"
    )


def explain(subject: SMTPGuardError | Category | str, locale: str | None = DEFAULT_LOCALE) -> str:
    """A short text for a non-technical user: what happened and what to do.

    ``subject`` is an smtp_guard error, a :class:`Category`, or a category's value.
    ``locale`` is a language tag such as ``"cs"``, ``"cs_CZ"`` or ``"cs-CZ.UTF-8"``, or an
    HTTP Accept-Language value (``"sk,cs;q=0.8"``: the first shipped language wins); an
    unknown one gives English.
    """
    msgid = explanation_id(subject)
    for catalog in _translations(locale):
        text = catalog.gettext(msgid)
        if text != msgid:
            return text
    # Only reachable if the package's catalogs are missing: say something useful anyway.
    if isinstance(subject, SMTPGuardError):
        return subject.hint
    return "The message could not be sent."
