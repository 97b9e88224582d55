"""The pool's queue: each waiter is bounded by its own call's deadline (one timer for the
whole queue), served first come first served, and leaves nothing behind once served."""

from __future__ import annotations

import asyncio

import pytest

from smtp_guard._pool import Pool
from smtp_guard.client._connect import ConnectParams
from smtp_guard.client._deadline import deadline_in
from smtp_guard.errors import SMTPTimeout


def _pool() -> Pool:
    return Pool(
        ConnectParams(hostname="pool.test"), size=1, max_messages=10, max_age=60, idle_check=5
    )


async def _wait_for_slot(pool: Pool, deadline: float, log: list[str], name: str) -> None:
    with deadline_in(deadline):
        try:
            await pool._slot()
        except SMTPTimeout as exc:
            log.append(f"{name} timeout: {exc.message}")
            raise
    log.append(f"{name} served")


async def test_waiters_time_out_by_their_own_deadlines_in_any_order() -> None:
    pool = _pool()
    await pool._slot()  # the one slot is taken and stays taken: the queue is the stalled phase
    log: list[str] = []
    # Queued long, shortest, short: the later-queued, earlier deadlines expire first.
    long = asyncio.ensure_future(_wait_for_slot(pool, 60.0, log, "long"))
    await asyncio.sleep(0)
    shortest = asyncio.ensure_future(_wait_for_slot(pool, 0.05, log, "shortest"))
    short = asyncio.ensure_future(_wait_for_slot(pool, 0.1, log, "short"))
    for task in (shortest, short):
        with pytest.raises(SMTPTimeout):
            await task
    assert [entry.split(":")[0] for entry in log] == ["shortest timeout", "short timeout"]
    assert "no pooled connection to pool.test:25 came free" in log[0]
    assert not long.done()
    pool._give_back_slot()  # the holder is done: the long waiter gets the slot
    await long
    assert log[-1] == "long served"
    assert pool.busy == 1
    assert not pool._waiters
    assert not pool._ends  # no deadline kept for a waiter served or gone
    assert pool._expiry is None  # and no timer left armed


async def test_served_waiters_leave_no_deadline_behind() -> None:
    pool = _pool()
    await pool._slot()
    log: list[str] = []
    waiters = [asyncio.ensure_future(_wait_for_slot(pool, 60.0, log, str(i))) for i in range(50)]
    await asyncio.sleep(0)
    assert len(pool._ends) == 50
    for i, waiter in enumerate(waiters):
        pool._give_back_slot()
        await waiter
        assert log[-1] == f"{i} served"  # first come, first served
        assert len(pool._ends) == 49 - i
    assert pool._expiry is None


async def test_no_time_left_fails_at_once_without_queueing() -> None:
    pool = _pool()
    await pool._slot()
    with deadline_in(0.0), pytest.raises(SMTPTimeout):
        await pool._slot()
    assert not pool._waiters
    assert not pool._ends


async def test_close_fails_waiters_and_disarms_the_timer() -> None:
    pool = _pool()
    await pool._slot()
    log: list[str] = []
    waiter = asyncio.ensure_future(_wait_for_slot(pool, 60.0, log, "w"))
    await asyncio.sleep(0)
    await pool.close()
    with pytest.raises(RuntimeError, match="closed"):
        await waiter
    assert not pool._ends
    assert pool._expiry is None


async def test_cancelled_waiters_leave_no_deadline_or_timer_behind() -> None:
    pool = _pool()
    await pool._slot()  # the one slot stays taken: everyone else queues
    log: list[str] = []
    waiters = [asyncio.ensure_future(_wait_for_slot(pool, 60.0, log, str(i))) for i in range(30)]
    await asyncio.sleep(0)
    assert len(pool._ends) == 30
    for task in reversed(waiters):  # latest deadline first: the heap's top goes last
        task.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    assert not pool._waiters
    assert not pool._ends  # the deadlines of cancelled waiters are not kept for 60 s
    assert pool._expiry is None
    assert pool.busy == 1
