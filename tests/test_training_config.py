"""Training options from a --config file, and training on several data roots with the leak check."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fashionnet.models import FashionNetConfig
from fashionnet.training.args import parse_args
from fashionnet.training.data import read_training_frames


def test_config_file_sets_options_and_the_command_line_wins(tmp_path):
    cfg = tmp_path / "run.yaml"
    # dashes or underscores, as the flags are spelled or as argparse names them
    cfg.write_text("backbone: tiny\nimage-size: 128\nlr: 0.005\ndata_root: [a/consumer2shop, a/inshop]\njoint_epochs: 7\n")
    args = parse_args(["--config", str(cfg), "--lr", "0.01"])
    assert args.backbone == "tiny" and args.image_size == 128 and args.joint_epochs == 7
    assert args.lr == pytest.approx(0.01), "a flag given on the command line wins over the file"
    assert [Path(p) for p in args.data_root] == [Path("a/consumer2shop"), Path("a/inshop")]
    # Options the file does not name keep their defaults.
    assert args.embedding_dim == parse_args([]).embedding_dim


def test_unknown_option_in_the_config_file_is_named(tmp_path, capsys):
    cfg = tmp_path / "typo.yaml"
    cfg.write_text("backbone: tiny\nlearning_rate: 0.1\n")
    with pytest.raises(SystemExit) as exc:
        parse_args(["--config", str(cfg)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "typo.yaml" in err and "learning_rate" in err


def test_empty_config_file_changes_nothing(tmp_path):
    cfg = tmp_path / "empty.yaml"
    cfg.write_text("")
    assert vars(parse_args(["--config", str(cfg)])) == {**vars(parse_args([])), "config": cfg}


CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_shipped_configs_parse():
    for cfg in CONFIGS:
        args = parse_args(["--config", str(cfg)])
        assert len(args.data_root) == 2, cfg


def test_the_defaults_are_the_recommended_recipe_and_the_model_config_agrees():
    args, config = parse_args([]), FashionNetConfig()
    assert (args.whiten_dim, args.whiten_by_part, args.colour_window, args.detail_window, args.appearance_weight) == (128, True, 0.075, 0.107, 2.0)
    assert args.freeze_trunk_layers == 4 and args.items_per_batch == 8 and len(args.data_root) == 2
    for name in ("backbone", "embedding_dim", "image_size", "landmark_head", "appearance_weight", "colour_window", "detail_window"):
        assert getattr(config, name) == getattr(args, name), name
    assert not parse_args(["--no-whiten-by-part"]).whiten_by_part


def test_shipped_configs_set_only_what_differs_from_the_defaults():
    import yaml

    def plain(value):
        return [plain(v) for v in value] if isinstance(value, list) else str(value) if isinstance(value, Path) else value

    defaults = vars(parse_args([]))
    for cfg in CONFIGS:
        values = yaml.safe_load(cfg.read_text())
        assert not {k: v for k, v in values.items() if plain(defaults[k.replace("-", "_")]) == v}, cfg.name


def test_two_layouts_of_one_catalogue_train_together(synth_root):
    frame, common, attributes = read_training_frames([synth_root / "consumer2shop", synth_root / "inshop"])
    assert common == synth_root.resolve()
    assert {p.split("/")[0] for p in frame["image_path"]} == {"consumer2shop", "inshop"}
    assert all((common / p).is_file() for p in frame["image_path"].head(20))
    assert attributes


def _layout_copy(src: Path, dst: Path) -> Path:
    """Annotation files copied (to be edited), the images linked."""
    dst.mkdir(parents=True)
    for part in ("Anno", "Eval"):
        shutil.copytree(src / part, dst / part)
    (dst / "img").symlink_to(src / "img", target_is_directory=True)
    return dst


def test_item_in_train_in_one_root_and_test_in_another_is_refused(synth_root, tmp_path):
    a = _layout_copy(synth_root / "consumer2shop", tmp_path / "a")
    b = _layout_copy(synth_root / "consumer2shop", tmp_path / "b")
    partition = b / "Eval" / "list_eval_partition.txt"
    lines = partition.read_text().splitlines()
    leaked = next(line.split()[2] for line in lines[2:] if line.split()[3] == "test")
    lines = lines[:2] + [" ".join(f[:3] + ["train"]) if f[2] == leaked else " ".join(f) for f in (l.split() for l in lines[2:])]
    partition.write_text("\n".join(lines) + "\n")
    read_training_frames([a])  # each root on its own is fine
    read_training_frames([b])
    with pytest.raises(SystemExit, match=leaked):
        read_training_frames([a, b])


def test_stage_weights_take_five_or_six_values(capsys):
    from fashionnet.training.schedule import StageWeights

    five = parse_args(["--joint-stage-weights", "1", "2", "3", "4", "5"])
    assert StageWeights(*five.joint_stage_weights).as_dict()["box"] == 1.0  # left out: the default
    six = parse_args(["--landmark-stage-weights", "1", "1", "0.1", "0.1", "0.1", "0.5"])
    assert StageWeights(*six.landmark_stage_weights).as_dict() == {
        "landmark": 1.0, "visibility": 1.0, "category": 0.1, "attribute": 0.1, "triplet": 0.1, "box": 0.5}
    with pytest.raises(SystemExit):
        parse_args(["--joint-stage-weights", "1", "2", "3", "4"])
    assert "takes 5 or 6 weights" in capsys.readouterr().err
