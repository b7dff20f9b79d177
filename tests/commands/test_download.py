"""What `senformer download --help` and `senformer info --weights NAME` tell about the published weights, with
nothing downloaded (the downloads themselves: tests/test_hub.py, against a server on 127.0.0.1)."""

import pytest

from senformer import hub
from senformer.cli import main


@pytest.fixture
def home(tmp_path, monkeypatch):
    folder = tmp_path / "senformer-home"
    monkeypatch.setenv(hub.HOME_ENV, str(folder))
    return folder


def test_download_help_names_every_model_source_and_mirror_variable(capsys):
    with pytest.raises(SystemExit):
        main(["download", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in ("enformer", "borzoi", "borzoi-mouse", "flashzoi", "hg38", "borzoi:N", "borzoi-replicate-N[-mouse]",
                 "flashzoi-replicate-N"):
        assert name in text, name
    for variable in (hub.WEIGHTS_URL_ENV, hub.BORZOI_URL_ENV, hub.HUGGINGFACE_URL_ENV, hub.GENOME_URL_ENV):
        assert f"${variable}" in text, variable
    assert "senformer convert" in text and "16,352 bins of 32 bp" in text


def test_an_unknown_name_lists_the_known_ones_in_one_line(home, capsys):
    assert main(["download", "borzoi:4"]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "unknown name 'borzoi:4'" in error and "flashzoi" in error and "hg38" in error
    assert main(["download", "hg38", "--source", "calico"]) == 2
    assert "comes from UCSC" in capsys.readouterr().err
    assert not home.exists()


def test_info_on_a_name_says_where_it_comes_from_without_downloading(home, capsys):
    assert main(["info", "--weights", "borzoi-mouse:2"]) == 0
    text = capsys.readouterr().out
    assert "canonical name borzoi-replicate-2-mouse" in text
    assert f"{hub.DEFAULT_BORZOI_URL}/f2/model1_best.h5" in text and "johahi/borzoi-replicate-2-mouse" in text
    assert "CC-BY-4.0" in text and "Apache-2.0" in text and "about 705 MB" in text
    assert f"`senformer download borzoi-mouse:2` fetches and converts it into {home}" in text
    assert "output_heads                     {'mouse': 2608}" in text
    assert "input 524,288 bp -> 4,096 positions -> 16,352 output bins" in text
    assert main(["info", "--weights", "flashzoi"]) == 0
    text = capsys.readouterr().out
    assert "MIT" in text and "attention: rotary" in text and "flashzoi-replicate-3" in text
    assert not home.exists()


def test_info_on_a_weights_path_describes_its_model(capsys):
    from helpers import SHARED

    keras = SHARED / "fixtures" / "borzoi_keras" / "pred_small" / "model1.h5"
    if not keras.is_file():
        pytest.skip(f"{keras} is absent (the shared reference folder sits beside the clone in CI)")
    assert main(["info", "--weights", str(keras), "--length", "65536"]) == 0
    text = capsys.readouterr().out
    assert "output_heads                     {'mouse': 6}" in text
    assert "input 65,536 bp -> 512 positions -> 2,016 output bins" in text
