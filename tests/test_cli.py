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
        (["info", "--set", "depth=1.5"], "depth=1.5 is not a whole number"),
        (["info", "--set", "heads=\"8\""], "heads='8' is not a whole number"),
        (["info", "--set", "relative_positions=1"], "relative_positions=1 is not true or false"),
        (["info", "--preset", "enformer", "--set", "output_heads={\"human\": 2.5}"], "output head 'human': 2.5 tracks"),
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


def test_a_config_file_that_is_not_json_is_one_line_naming_it(tmp_path, capsys):
    path = tmp_path / "config.json"
    path.write_text("{dim: 1536")
    assert main(["info", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: not valid JSON" in err and err.count("\n") == 1


def test_an_unexpected_value_error_inside_a_command_keeps_its_traceback_and_exits_1(monkeypatch, capsys):
    import senformer.commands.info as info

    def broken(args):
        raise ValueError("an internal invariant failed")  # what a bug inside torch or our code raises

    monkeypatch.setattr(info, "run", broken)
    assert main(["info"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "in broken" in err
    assert err.strip().endswith("ValueError: an internal invariant failed")


def test_user_error_is_a_value_error_for_library_callers():
    from senformer import EnformerConfig
    from senformer.errors import UserError

    assert issubclass(UserError, ValueError)
    with pytest.raises(ValueError, match="dim=7 is not divisible by heads=8"):
        EnformerConfig(dim=7)
