import pytest

from senformer.cli import main


def test_info_prints_the_parameter_count_and_pattern(capsys):
    assert main(["info", "--preset", "senformer"]) == 0
    out = capsys.readouterr().out
    assert "251,221,292" in out and "24 blocks" in out and "3 random" in out


def test_info_on_a_chunked_model_and_overrides(capsys):
    assert main(["info", "--attention", "chunked", "--set", "depth=1", "--set", "chunk_size=128"]) == 0
    out = capsys.readouterr().out
    assert "128 queries per chunk" in out and "depth                            1" in out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["info", "--length", "1000"], "sequence length 1,000 bp is not valid"),
        (["info", "--set", "dim=7"], "dim=7"),
        (["info", "--set", "colour=1"], "unknown EnformerConfig fields: colour"),
        (["info", "--config", "/nonexistent/config.json"], "/nonexistent/config.json"),
    ],
)
def test_user_errors_end_in_one_line_and_exit_2(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_unknown_options_exit_non_zero():
    with pytest.raises(SystemExit) as exit_info:
        main(["info", "--bogus"])
    assert exit_info.value.code == 2
