"""What `socialens ... --help` shows beyond each option's own help: an example for every command
and command group, the version, and the warnings a command line user should not see."""

from __future__ import annotations

import warnings

import typer

# Command path (as typed after `socialens`) -> example lines. Square brackets would be read as
# rich markup by typer's help renderer, so optional parts are shown as a second example instead.
EXAMPLES: dict[str, list[str]] = {
    "": [
        "socialens data split my.csv --text body --label stance --out splits/mine",
        "socialens train encoder --data splits/mine --model builtin:minilm-l6 --out models/mine",
        "socialens serve models/mine",
    ],
    "bench": [
        "socialens bench configs/demo.yaml",
        "socialens bench my-stance.yaml --data-root ../shared/datasets --save-models",
    ],
    "report": ["socialens report runs/demo", "socialens report runs/a runs/b --out reports/a-vs-b"],
    "data": ["socialens data check my.csv --text body --label stance --labels favor,against,none"],
    "data check": ["socialens data check my.csv --text body --label stance --labels favor,against,none"],
    "data split": ["socialens data split my.csv --text body --label stance --out splits/mine"],
    "train": [
        "socialens train tfidf --data splits/mine --out models/mine-tfidf",
        "socialens train encoder --data splits/mine --model builtin:minilm-l6 --epochs 4 --out models/mine",
    ],
    "predict": [
        "socialens predict models/mine new_comments.jsonl --text body --out labelled.jsonl",
        "socialens predict models/mine big.csv --label stance --out labelled.parquet --engine ray",
    ],
    "serve": [
        "export SOCIALENS_TOKEN=change-me",
        "socialens serve models/mine --port 8080 --token-env SOCIALENS_TOKEN",
        "curl -s http://127.0.0.1:8080/healthz",
    ],
    "models": ["socialens models"],
    "export": ["socialens export onnx models/mine"],
    "export onnx": [
        "socialens export onnx models/mine",
        "socialens export onnx models/mine --dev splits/mine/dev.jsonl --quantization blockwise",
    ],
    "instruct": ["socialens instruct build configs/instruct-mix.yaml --out data/lens"],
    "instruct build": [
        "socialens instruct build configs/instruct-mix.yaml --out data/lens --shuffle by_task"
    ],
    "instruct generate": [
        "socialens instruct generate configs/datasets/tweeteval-hate.yaml --task hate_speech --out my-hate.yaml"
    ],
    "instruct train": [
        "socialens instruct train data/lens --base builtin:smollm2-135m-instruct --lora-r 16 --out models/lens",
        "socialens instruct train data/lens --out models/lens --resume",
    ],
}


# Every registered family (socialens.classifiers.base.REGISTRY), spelled out so that the help needs
# no import of the families; tests/test_cli.py checks it against the registry.
FAMILY_NAMES = "encoder, tfidf, prompted, instruct or llm_head"


def example_epilog(lines: list[str]) -> str:
    return (
        ("Example:" if len(lines) == 1 else "Examples:") + "\n\n" + "\n".join(f"  {line}" for line in lines)
    )


def add_examples(app: typer.Typer, prefix: str = "") -> None:
    """Give every command and group of ``app`` (and of its sub-apps) its EXAMPLES entry as the help
    epilog. A command without one gets none; tests/test_cli.py walks every --help to catch that."""
    if prefix == "" and "" in EXAMPLES:
        app.info.epilog = example_epilog(EXAMPLES[""])
    for command in app.registered_commands:
        name = command.name or command.callback.__name__.replace("_", "-")
        path = f"{prefix} {name}".strip()
        if path in EXAMPLES:
            command.epilog = example_epilog(EXAMPLES[path])
    for group in app.registered_groups:
        path = f"{prefix} {group.name}".strip()
        if path in EXAMPLES:
            group.typer_instance.info.epilog = example_epilog(EXAMPLES[path])
        add_examples(group.typer_instance, path)


def quiet_transformers_future_warnings() -> None:
    """Hide the FutureWarnings transformers raises about its own deprecations (`gradient_checkpointing`
    renamed, arguments moving in v6): they address whoever writes the calling code, not whoever runs
    a command, and they push the progress and results off the screen. Other warnings still show."""
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers(\.|$)")


def print_version(value: bool) -> None:
    if value:
        from socialens import __version__

        typer.echo(f"socialens {__version__}")
        raise typer.Exit()


__all__ = [
    "EXAMPLES",
    "FAMILY_NAMES",
    "add_examples",
    "example_epilog",
    "print_version",
    "quiet_transformers_future_warnings",
]
