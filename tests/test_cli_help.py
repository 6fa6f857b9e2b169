"""What the command line says about itself: an example in every --help, --version, the families
`train` takes, and no FutureWarnings from transformers."""

import warnings

import typer
from typer.testing import CliRunner

import socialens
from socialens.cli import app
from socialens.cli_help import EXAMPLES, FAMILY_NAMES

runner = CliRunner()


def command_paths(command, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and group under ``command`` (typer's own click), as the words typed after
    `socialens`."""
    paths = [prefix]
    for name, sub in getattr(command, "commands", {}).items():
        paths += command_paths(sub, (*prefix, name))
    return paths


def test_every_help_ends_with_an_example_of_that_command():
    paths = command_paths(typer.main.get_command(app))
    assert {" ".join(path) for path in paths} == set(EXAMPLES)  # a new command needs an example
    assert len(paths) >= 16 and ("export", "onnx") in paths and ("instruct", "train") in paths
    for path in paths:
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, (path, result.output)
        help_text = result.output.split("Example", 1)
        assert len(help_text) == 2, f"socialens {' '.join(path)} --help shows no example"
        shown = [line.strip() for line in help_text[1].splitlines() if line.strip().startswith("socialens")]
        command = " ".join(("socialens", *path))
        assert shown and all(line.startswith(command) for line in shown), (command, shown)
        assert shown == [line for line in EXAMPLES[" ".join(path)] if line.startswith("socialens")]


def test_version_prints_the_package_version_and_exits():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"socialens {socialens.__version__}\n"
    assert socialens.__version__ == "0.1.0"


def test_train_help_lists_every_registered_family():
    from socialens.classifiers.base import REGISTRY, get_family

    get_family("tfidf")  # imports every built-in family, filling the registry
    named = set(FAMILY_NAMES.replace(" or ", ", ").split(", "))
    assert named == set(REGISTRY) == {"encoder", "tfidf", "prompted", "instruct", "llm_head"}
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert f"model family: {FAMILY_NAMES}" in result.output
    assert "dev/test scores" in result.output  # what train prints (tests/test_cli.py checks it does)


def test_the_cli_hides_transformers_future_warnings_and_no_others(tmp_path):
    from transformers import TrainingArguments

    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")  # a fresh process shows each warning once; here, every one
        TrainingArguments(output_dir=str(tmp_path), gradient_checkpointing=True, report_to=[])
        assert any(w.category is FutureWarning and "gradient_checkpointing" in str(w.message) for w in shown)
        shown.clear()
        assert runner.invoke(app, ["models"]).exit_code == 0  # any command sets the CLI's filters
        TrainingArguments(output_dir=str(tmp_path), gradient_checkpointing=True, report_to=[])
        warnings.warn("another library's deprecation", FutureWarning, stacklevel=1)
        warnings.warn("a user warning", UserWarning, stacklevel=1)
    assert [(w.category, str(w.message)) for w in shown] == [
        (FutureWarning, "another library's deprecation"),
        (UserWarning, "a user warning"),
    ]
