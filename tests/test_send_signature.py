"""The connection arguments are defined once (``ConnectParams``) and shown everywhere.

``send``, ``send_sync``, ``Mailer`` and ``SyncMailer`` spell the arguments out in their own
signatures, so that IDEs and ``help()`` show them; these tests keep those lists in step with
``ConnectParams`` (which builds the connection from them by name) and with ``aiosmtplib.send``
(drop-in: same names and defaults).
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from typing import Any

import aiosmtplib
import pytest

import smtp_guard
from smtp_guard.client._connect import ConnectParams
from smtp_guard.mailer import Mailer, SyncMailer

#: Arguments of ours that ``aiosmtplib.send`` does not have.
OURS = {"policy", "allow_insecure_auth"}
#: Connection arguments a pooled Mailer does not take (a socket serves one connection).
NOT_POOLED = {"sock"}


def _parameters(func: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(func, eval_str=True).parameters)


def _hints(func: Callable[..., Any]) -> dict[str, Any]:
    return typing.get_type_hints(func)


def test_send_is_a_drop_in_for_aiosmtplib_send() -> None:
    theirs = _parameters(aiosmtplib.send)
    ours = _parameters(smtp_guard.send)
    assert list(ours)[: len(theirs)] == list(theirs)
    assert set(ours) - set(theirs) == OURS
    for name, param in theirs.items():
        assert ours[name].kind == param.kind, name
        assert ours[name].default == param.default, name


@pytest.mark.parametrize(
    ("func", "missing"),
    [(smtp_guard.send, set()), (Mailer.__init__, NOT_POOLED)],
    ids=["send", "Mailer"],
)
def test_every_connection_argument_is_in_the_signature_as_connect_params_has_it(
    func: Callable[..., Any], missing: set[str]
) -> None:
    params = _parameters(func)
    hints = _hints(func)
    field_hints = typing.get_type_hints(ConnectParams)
    for field in dataclasses.fields(ConnectParams):
        if field.name in missing:
            assert field.name not in params
            continue
        param = params[field.name]
        assert param.kind is inspect.Parameter.KEYWORD_ONLY, field.name
        assert param.default == field.default, field.name
        assert hints[field.name] == field_hints[field.name], field.name


def test_the_sync_facades_show_the_same_arguments() -> None:
    assert inspect.signature(smtp_guard.send_sync) == inspect.signature(smtp_guard.send)
    mailer = inspect.signature(Mailer)
    assert inspect.signature(SyncMailer) == mailer
    assert "hostname" in mailer.parameters


def test_connect_params_takes_the_arguments_by_name() -> None:
    def call(
        *, hostname: str = "mx.example.test", port: int = 2525, pool_size: int = 3
    ) -> ConnectParams:
        return ConnectParams.of(locals())

    params = call()
    assert (params.hostname, params.port) == ("mx.example.test", 2525)
    assert params.timeout == ConnectParams().timeout  # not given: the default
