import json

import pytest

from senformer.errors import UserError
from senformer.train import TrainSettings
from senformer.train.settings import merge_settings


def test_yaml_and_json_files_with_flag_overrides(tmp_path):
    yaml_path = tmp_path / "run.yaml"
    yaml_path.write_text("data:\n  human: /data/human\n  mouse: /data/mouse\nsteps: 20\ntrain: attention\n")
    settings = TrainSettings.from_file(yaml_path, {"steps": 5, "data": {"mouse": "/elsewhere"}})
    assert settings.steps == 5 and settings.train == "attention"
    assert settings.data == {"human": "/data/human", "mouse": "/elsewhere"}  # mappings merge key by key
    json_path = tmp_path / "run.json"
    json_path.write_text(settings.to_json())
    assert TrainSettings.from_file(json_path) == settings


def test_unknown_keys_name_the_key_the_file_and_a_suggestion(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("data: {human: d}\nlearning_rte: 0.1\nbogus: 1\n")
    with pytest.raises(UserError) as caught:
        TrainSettings.from_file(path)
    message = str(caught.value)
    assert str(path) in message and "'learning_rte' (did you mean 'learning_rate'?)" in message and "'bogus'" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "values, fragment",
    [
        ({}, "data is empty"),
        ({"data": {"human": "d"}, "steps": 0}, "steps=0 must be at least 1"),
        ({"data": {"human": "d"}, "distill_weight": 2.0}, "distill_weight=2.0"),
        ({"data": {"human": "d"}, "decay": "linear"}, "decay='linear'"),
        ({"data": {"human": "d"}, "batchnorm": "sync"}, "batchnorm='sync'"),
        ({"data": {"human": "d"}, "genome": {"mouse": "mm10.fa"}}, "genome for head 'mouse'"),
        ({"data": {"human": "d"}, "new_heads": {"my-head": 3}}, "new head 'my-head'"),
    ],
)
def test_bad_values_are_one_clear_error(values, fragment):
    with pytest.raises(UserError, match="invalid training settings") as caught:
        TrainSettings.from_dict(values)
    assert fragment in str(caught.value)


def test_file_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        TrainSettings.from_file(tmp_path / "absent.yaml")
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match="must be a mapping"):
        TrainSettings.from_file(listed)
    broken = tmp_path / "broken.json"
    broken.write_text("{data: [")
    with pytest.raises(UserError, match="not valid YAML/JSON"):
        TrainSettings.from_file(broken)


def test_model_config_from_preset_and_overrides():
    settings = TrainSettings(data={"human": "d"}, preset="senformer", model_overrides={"depth": 2},
                             attention="full", checkpoint_activations=True)
    values = settings.model_config_dict()
    assert values["depth"] == 2 and values["attention"] == "full" and values["checkpoint_transformer"] is True
    assert json.loads(settings.to_json())["adam_betas"] == [0.9, 0.999]


def test_merge_settings_replaces_scalars_and_merges_mappings():
    assert merge_settings({"a": 1, "m": {"x": 1}}, {"a": 2, "m": {"y": 2}}) == {"a": 2, "m": {"x": 1, "y": 2}}


def test_yaml_strings_that_are_numbers_become_numbers_and_wrong_types_are_errors(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("data: {human: d}\nlearning_rate: 5e-4\nadam_eps: 1e-8\nsteps: 1e3\n")
    settings = TrainSettings.from_file(path)
    assert settings.learning_rate == 5e-4 and settings.adam_eps == 1e-8 and settings.steps == 1000
    with pytest.raises(UserError, match=r"steps='many' is not a number"):
        TrainSettings.from_dict({"data": {"human": "d"}, "steps": "many"})
    with pytest.raises(UserError, match=r"steps=2.5 is not a whole number"):
        TrainSettings.from_dict({"data": {"human": "d"}, "steps": 2.5})
    with pytest.raises(UserError, match=r"bf16='yes please' is not true or false"):
        TrainSettings.from_dict({"data": {"human": "d"}, "bf16": "yes please"})
    with pytest.raises(UserError, match=r"data must be a mapping"):
        TrainSettings.from_dict({"data": "d"})
    with pytest.raises(UserError, match=r"train may not be null"):
        TrainSettings.from_dict({"data": {"human": "d"}, "train": None})


def test_malformed_heads_betas_and_init_skip_are_one_user_error():
    with pytest.raises(UserError, match="new_heads=.* must map head names to whole track counts"):
        TrainSettings(data={"human": "d"}, new_heads={"atac": "three"})
    with pytest.raises(UserError, match="must map head names to whole track counts"):
        TrainSettings(data={"human": "d"}, new_heads={"atac": 2.5})
    assert TrainSettings(data={"human": "d"}, new_heads={"atac": "3"}).new_heads == {"atac": 3}
    with pytest.raises(UserError, match="adam_betas=.* must be two numbers"):
        TrainSettings(data={"human": "d"}, adam_betas=("a", 0.9))
    with pytest.raises(UserError, match="adam_betas=.* must be two numbers"):
        TrainSettings(data={"human": "d"}, adam_betas=(0.9,))
    with pytest.raises(UserError, match="init_skip='attention' needs init_weights"):
        TrainSettings(data={"human": "d"}, init_skip="attention")
    with pytest.raises(UserError, match="init_skip='transformer.\\(' is neither attention nor a valid regular expression"):
        TrainSettings(data={"human": "d"}, init_weights="w", init_skip="transformer.(")


def test_a_preset_names_its_fields_on_top_of_initial_weights():
    report = TrainSettings(data={"human": "d"}, init_weights="w", preset="s-enformer-report", model_overrides={"key_size": 24})
    assert report.config_overrides() == {"attention": "bigbird", "relative_positions": False, "key_size": 24}
    assert TrainSettings(data={"human": "d"}, init_weights="w").config_overrides() == {}  # enformer names none
    replaced = TrainSettings(data={"human": "d"}, preset="senformer", model_config="c.json")
    assert replaced.config_overrides() == {}  # a config JSON replaces the preset
