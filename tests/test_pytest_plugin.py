"""The pytest plugin, run the way a user's test suite runs it (pytester)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytest_plugins = ["pytester"]

#: The inner runs load only the plugins named here: fast (no celery/django/hypothesis plugins
#: imported per run), and the same whether or not the pytest11 entry point is installed.
PLUGIN_ARGS = ("-p", "pytest_asyncio.plugin", "-p", "smtp_guard.testing.plugin")


@pytest.fixture(autouse=True)
def _no_plugin_autoload(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")


INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
filterwarnings = error
"""


def run(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    pytester.makeini(INI)
    pytester.makepyfile(textwrap.dedent(source))
    return pytester.runpytest(*PLUGIN_ARGS, "-p", "no:cacheprovider", *args)


def test_marker_scripts_the_fixture_server_for_sync_and_async_tests(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        """
        import smtplib
        import aiosmtplib
        import pytest

        BODY = b"Subject: s\\r\\n\\r\\nhi\\r\\n"

        @pytest.mark.smtp_faults("rcpt:*@gone.test=550 5.1.1 No such user")
        def test_sync(fault_smtp):
            with smtplib.SMTP(fault_smtp.host, fault_smtp.port, "c.test", timeout=5) as c:
                refused = c.sendmail("a@x.test", ["b@ok.test", "c@gone.test"], BODY)
            assert refused == {"c@gone.test": (550, b"5.1.1 No such user")}
            assert fault_smtp.deliveries_to("b@ok.test") == 1

        @pytest.mark.smtp_faults("mail=451 4.3.0 Busy x1")
        async def test_async(fault_smtp):
            kw = dict(hostname=fault_smtp.host, port=fault_smtp.port, local_hostname="c.test",
                      start_tls=False)
            with pytest.raises(aiosmtplib.SMTPSenderRefused):
                await aiosmtplib.send(BODY, sender="a@x.test", recipients=["b@y.test"], **kw)
            await aiosmtplib.send(BODY, sender="a@x.test", recipients=["b@y.test"], **kw)
            assert fault_smtp.fault_hits == [1]

        def test_unmarked_server_behaves(fault_smtp):
            assert fault_smtp.faults == ()
            with smtplib.SMTP(fault_smtp.host, fault_smtp.port, "c.test", timeout=5) as c:
                assert c.sendmail("a@x.test", ["b@y.test"], BODY) == {}
        """,
    )
    result.assert_outcomes(passed=3)


def test_marker_settings_and_class_level_markers(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import smtplib
        import pytest

        @pytest.mark.smtp_faults("rcpt=450 4.2.1 Class-level", credentials={"u": "class"})
        class TestGroup:
            @pytest.mark.smtp_faults("rcpt:*@near.test=550 Near", credentials={"u": "pw"})
            def test_nearest_first(self, fault_smtp):
                assert [str(f) for f in fault_smtp.faults] == [
                    "rcpt:*@near.test=550 Near", "rcpt=450 4.2.1 Class-level"]
                assert fault_smtp.settings.credentials == {"u": "pw"}
                with smtplib.SMTP(fault_smtp.host, fault_smtp.port, "c.test", timeout=5) as c:
                    c.login("u", "pw")

            def test_class_only(self, fault_smtp):
                assert len(fault_smtp.faults) == 1
        """,
    )
    result.assert_outcomes(passed=2)


def test_bad_marker_fails_the_test_with_the_parser_message(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest

        @pytest.mark.smtp_faults("rpct:*@x.test=550 typo")
        def test_typo(fault_smtp):
            pass

        @pytest.mark.smtp_faults(sise=10)
        def test_unknown_setting(fault_smtp):
            pass
        """,
    )
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            "*@pytest.mark.smtp_faults: bad fault 'rpct:*@x.test=550 typo'*unknown phase*",
            "*@pytest.mark.smtp_faults: *unexpected keyword argument 'sise'*",
        ],
        consecutive=False,
    )
    assert "Traceback" not in result.stdout.str()
    assert "During handling" not in result.stdout.str()


def test_factory_starts_more_servers_and_stops_them(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import socket
        import pytest

        SEEN = []

        def test_two(fault_smtp_factory):
            a = fault_smtp_factory("mail=550 no")
            b = fault_smtp_factory(max_recipients=1)
            assert a.port != b.port
            SEEN.extend([a.port, b.port])

        def test_stopped_after():
            for port in SEEN:  # free to listen on again (connecting could reach itself)
                with socket.socket() as probe:
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    probe.bind(("127.0.0.1", port))
                    probe.listen()
        """,
    )
    result.assert_outcomes(passed=2)


def test_marker_is_registered_for_strict_markers(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    result = pytester.runpytest(*PLUGIN_ARGS, "--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.smtp_faults(*faults, **settings):*"])


def test_importing_the_plugin_does_not_need_aiosmtpd() -> None:
    code = (
        "import sys; sys.modules['aiosmtpd'] = None\n"
        "import smtp_guard.testing.plugin, smtp_guard.testing\n"
        "assert smtp_guard.testing.parse_fault('mail=drop')\n"
        "try:\n    smtp_guard.testing.FaultServer\nexcept ImportError:\n    print('lazy')\n"
    )
    out = subprocess.run(  # noqa: S603 (our own interpreter and code)
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "lazy"


def test_testing_package_reexports_the_retry_switch() -> None:
    import smtp_guard.policy  # noqa: PLC0415
    import smtp_guard.testing  # noqa: PLC0415

    assert smtp_guard.testing.no_wait is smtp_guard.policy.no_wait
    assert smtp_guard.testing.set_testing is smtp_guard.policy.set_testing
    assert sorted(smtp_guard.testing.__all__) == list(smtp_guard.testing.__all__)
    for name in smtp_guard.testing.__all__:
        assert getattr(smtp_guard.testing, name) is not None
