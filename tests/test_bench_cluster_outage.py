"""The outage bench judges only the windows after Redis returns, from the server's records."""

from __future__ import annotations

from bench.cluster_outage import BACK_AT, HANG_AT, judge


def record(at: float, status: int, process: int) -> dict[str, object]:
    return {"received": at, "status": status, "text": f"p{process} m0 r0"}


def test_the_windows_after_the_return_are_judged_by_who_was_served_when() -> None:
    window, rpm, start = 1.0, 4, 100.0
    back = start + BACK_AT * window
    records = [record(start + 0.1, 200, 0)]  # before the outage: not judged
    away = start + HANG_AT * window + 0.5
    records += [record(away, 200, 0), record(away, 429, 1), record(away, 200, 1)]
    # Window 1 after the return: 2 of 4; windows 2 to 4 full, process 0 taking 3 of 4 in each.
    records += [record(back + 0.1, 429, 0), record(back + 0.2, 200, 0), record(back + 0.3, 200, 1)]
    for w in range(1, 4):
        at = back + w * window
        records += [record(at + 0.1 * k, 200, 0 if k < 3 else 1) for k in range(4)]
    records.append(record(back + 4 * window + 0.1, 200, 1))  # the last, partial window
    early, later, shares, after, during, calls_during, windows = judge(
        records, processes=2, start=start, window=window, rpm=rpm
    )
    assert windows == 4
    assert early == (2 + 4) / 8
    assert later == 1.0
    assert shares == (1 + 9, 1 + 3)
    assert (after, during, calls_during) == (1, 1, 3)
