"""The RFC 3463 / RFC 5248 enhanced status code registry."""

from __future__ import annotations

import doctest
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtp_guard import enhanced, errors
from smtp_guard.enhanced import DETAILS, SUBJECTS, describe_enhanced, lookup_enhanced


@pytest.mark.parametrize(
    ("code", "meaning"),
    [
        ("5.1.1", "Bad destination mailbox address"),
        ("5.1.2", "Bad destination system address"),
        ("5.1.3", "Bad destination mailbox address syntax"),
        ("4.2.2", "Mailbox full"),
        ("5.2.1", "Mailbox disabled, not accepting messages"),
        ("5.3.4", "Message too big for system"),
        ("4.4.1", "No answer from host"),
        ("4.4.5", "Mail system congestion"),
        ("5.5.3", "Too many recipients"),
        ("5.7.1", "Delivery not authorized, message refused"),
        ("5.7.8", "Authentication credentials invalid"),
        ("5.7.26", "Multiple authentication checks failed"),
        ("4.7.28", "Mail flood detected"),
        ("5.7.30", "REQUIRETLS support required"),
        ("2.0.0", "Other undefined status"),
        ("2.1.5", "Destination address valid"),
    ],
)
def test_registered_codes(code: str, meaning: str) -> None:
    assert describe_enhanced(code) == meaning
    found = lookup_enhanced(code)
    assert found.registered
    assert found.reference is not None
    assert found.reference.startswith(("RFC ", "IANA"))


def test_parts_of_a_code() -> None:
    found = lookup_enhanced("5.1.1")
    assert (found.status_class, found.subject, found.detail) == (5, 1, 1)
    assert found.class_meaning == "Permanent failure"
    assert found.subject_meaning == "Addressing status"
    assert found.permanent
    assert not lookup_enhanced("4.2.2").permanent
    assert lookup_enhanced("4.2.2").class_meaning == "Persistent transient failure"


def test_unregistered_detail_falls_back_to_the_subject() -> None:
    found = lookup_enhanced("4.1.99")
    assert not found.registered
    assert found.detail_meaning is None
    assert found.reference is None
    assert describe_enhanced("4.1.99") == "Addressing status"
    assert describe_enhanced("5.7.999") == "Security or policy status"


def test_unregistered_subject_falls_back_to_the_class() -> None:
    assert describe_enhanced("5.9.1") == "Permanent failure"
    assert lookup_enhanced("4.8.0").subject_meaning == "Unregistered subject"


@pytest.mark.parametrize("written", ["#5.3.4", "(#5.3.4)", "(5.3.4)", " 5.3.4 ", "5.03.004"])
def test_written_forms_servers_use(written: str) -> None:
    found = lookup_enhanced(written)
    assert found.code == "5.3.4"
    assert found.meaning == "Message too big for system"


@pytest.mark.parametrize(
    "bad", ["", "5.1", "3.1.1", "1.1.1", "5.1.1.1", "5.1.1 extra", "five", "5.1234.1", "X.1.1"]
)
def test_malformed_codes_are_a_clear_value_error(bad: str) -> None:
    with pytest.raises(ValueError, match="not an enhanced status code"):
        lookup_enhanced(bad)


def test_a_non_string_is_a_value_error_too() -> None:
    with pytest.raises(ValueError, match="not an enhanced status code"):
        lookup_enhanced(511)  # type: ignore[arg-type]


@given(st.text())
def test_lookup_either_answers_or_raises_value_error(text: str) -> None:
    try:
        found = lookup_enhanced(text)
    except ValueError:
        return
    assert found.meaning


def test_the_table_is_complete_and_tidy() -> None:
    assert set(SUBJECTS) == set(range(8))
    for subject in SUBJECTS:
        details = sorted(d for s, d in DETAILS if s == subject)
        # Every subject has its "other or undefined" X.n.0 and no gaps in its numbering.
        assert details == list(range(len(details))), subject
    for (subject, detail), (meaning, reference) in DETAILS.items():
        assert meaning[0].isupper(), (subject, detail)
        assert not meaning.endswith("."), (subject, detail)
        assert reference
    # The registry as of RFC 8689: X.1.10, X.2.4, X.3.6, X.4.7, X.5.6, X.6.10, X.7.30.
    assert max(d for s, d in DETAILS if s == 7) == 30
    assert len(DETAILS) == 1 + 11 + 5 + 7 + 8 + 7 + 11 + 31


def test_every_enhanced_code_named_in_the_error_tree_is_registered() -> None:
    named = set(re.findall(r"\b[245]\.\d\.\d{1,2}\b", errors.__doc__ or ""))
    assert named  # the tree names several
    for code in named:
        assert lookup_enhanced(code).registered, code


def test_doctests() -> None:
    failures, tried = doctest.testmod(enhanced)
    assert tried >= 2
    assert failures == 0
