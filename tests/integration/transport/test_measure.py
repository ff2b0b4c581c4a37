"""The loopback measurement runs real sessions; its CLI refuses bad input in a line."""

from __future__ import annotations

import pytest

from edgecloud.transport.__main__ import main
from edgecloud.transport.measure import Timing, connect_times, round_trips


def test_round_trips_and_connect_times_are_measured() -> None:
    # Execute
    tiny = round_trips(1, 20, warmup=2)
    big = round_trips(256 * 1024, 10, warmup=1)
    other_process = round_trips(1024, 5, warmup=1, client_process=True)
    connects = connect_times(3)

    # Assert
    assert (tiny.n, big.n, other_process.n, connects.n) == (20, 10, 5, 3)
    for timing in (tiny, big, other_process, connects):
        assert 0 < timing.p10 <= timing.median <= timing.p90 < 5


def test_timing_summarises_samples() -> None:
    # Execute
    timing = Timing.of([float(i) for i in range(1, 12)])

    # Assert
    assert (timing.n, timing.median, timing.p10, timing.p90) == (11, 6.0, 2.0, 10.0)


def test_cli_prints_one_line_per_size(capsys: pytest.CaptureFixture[str]) -> None:
    # Execute
    code = main(["--n", "5", "--sizes", "0,64", "--connects", "2"])

    # Assert
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert [line.split(":")[0] for line in lines[1:]] == [
        "round trip         0 B each way, client thread ",
        "round trip        64 B each way, client thread ",
        "round trip         0 B each way, client process",
        "round trip        64 B each way, client process",
        "connect() (TLS + hello + acceptance)",
    ]


@pytest.mark.parametrize(
    "argv",
    [
        # fewer than two samples have no spread
        ["--n", "1"],
        # not a number
        ["--n", "many"],
        # a negative size
        ["--sizes", "1,-5"],
        # an unknown option
        ["--fast"],
    ],
)
def test_cli_bad_input_exits_2_with_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Execute
    with pytest.raises(SystemExit) as info:
        main(argv)

    # Assert
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert err.count("\n") == 1 and err.startswith("error: ")
