"""The `socialens` command line: thin; it parses, calls the library and prints."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from socialens.cli_help import FAMILY_NAMES, add_examples, print_version, quiet_transformers_future_warnings
from socialens.core.errors import SocialensError

app = typer.Typer(
    help="Build, compare and serve text classifiers for news and social-media analysis.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Check and split labelled data files.", no_args_is_help=True)
app.add_typer(data_app, name="data")
export_app = typer.Typer(
    help="Export a fine-tuned encoder for fast inference (ONNX int8).", no_args_is_help=True
)
app.add_typer(export_app, name="export")
instruct_app = typer.Typer(
    help="Instruction-tuning data (the LlamaLens recipe) and tuning.", no_args_is_help=True
)
app.add_typer(instruct_app, name="instruct")
# No rich markup and no :emoji: codes: what is printed holds paths, labels, column names and
# texts from files, shown exactly as they are ("[/red]" or "x:x:y" is text, never markup).
console = Console(markup=False, emoji=False)


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=print_version, is_eager=True, help="print the version and exit"),
    ] = False,
) -> None:
    quiet_transformers_future_warnings()


def _error_text(error: Exception | str) -> Text:
    return Text.assemble(("error:", "red"), f" {error}")


def _fail(error: Exception) -> None:
    console.print(_error_text(error), highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def _parse_labels(labels: str | None):
    from socialens.core.types import LabelSchema

    if labels is None:
        return None
    names = [name.strip() for name in labels.split(",") if name.strip()]
    if not names:
        raise SocialensError(f"--labels '{labels}': no label names; expected comma-separated names: a,b,c")
    if len(set(names)) < len(names):
        twice = next(name for name in names if names.count(name) > 1)
        raise SocialensError(f"--labels '{labels}': '{twice}' is listed twice; expected each label once")
    try:
        return LabelSchema.from_names(names)
    except ValueError as exc:  # two spellings of one label, e.g. pos,POS
        raise SocialensError(f"--labels '{labels}': {exc}; expected labels that differ beyond case") from None


def _check_at_least(minimum: int = 1, **options: int | None) -> None:
    """A one-line error for the first numeric option below ``minimum`` (None: not given)."""
    for name, value in options.items():
        if value is not None and value < minimum:
            raise SocialensError(f"--{name.replace('_', '-')}: expected at least {minimum}, got {value}")


def _checked_params(model, options: dict[str, str], **values):
    """``model(**values)``, a pydantic model built from command-line options; a bad value is one
    line naming the option (``options`` maps a field to its option where the names differ)."""
    from pydantic import ValidationError

    try:
        return model(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first.get("loc") else "value"
        option = options.get(field, "--" + field.replace("_", "-"))
        raise SocialensError(f"{option} {first.get('input')!r}: {first['msg']}") from None


def _meta(metadata: list[str] | None) -> dict[str, str] | None:
    return {name: name for name in metadata} if metadata else None


# What a model directory (or an experiment) may do only with the user's say (docs/security.md).
TrustPickle = Annotated[
    bool,
    typer.Option(
        "--trust-pickle",
        help="allow pickle files in the model directory (an old TF-IDF pipeline.joblib, torch *.bin "
        "weights); unpickling runs any code their author put in them",
    ),
]
AllowEndpoint = Annotated[
    list[str] | None,
    typer.Option(
        "--allow-endpoint",
        help="endpoint URL that saved settings may send texts to, e.g. a prompted model's base_url (repeatable)",
    ),
]
AllowKeyEnv = Annotated[
    list[str] | None,
    typer.Option(
        "--allow-key-env",
        help="environment variable that saved settings may read an API key from (repeatable)",
    ),
]


RunDataset = Annotated[
    str | None,
    typer.Option(
        help="with a run folder: the dataset whose recommended model to use (needed when it has several)"
    ),
]
MODEL_OR_RUN = "a model directory written by train or bench, or a run folder (its recommended model)"


def _run_model(path: Path, dataset: str | None):
    """The model a command uses (``evaluation.run_models.RunModel``): ``path``, or the recommended
    model of a run folder (one line says which)."""
    from socialens.evaluation.run_models import resolve_model

    found = resolve_model(path, dataset)
    if found.describe():
        console.print(found.describe(), highlight=False, soft_wrap=True)
    return found


def _model_of(path: Path, dataset: str | None) -> Path:
    return _run_model(path, dataset).path


def _load_options(trust_pickle: bool, allow_endpoint: list[str] | None, allow_key_env: list[str] | None):
    """The load_classifier keywords for what the user allowed on the command line."""
    return {
        "trust_pickle": trust_pickle,
        "allow_endpoints": list(allow_endpoint or ()),
        "allow_key_envs": list(allow_key_env or ()),
    }


def _confirm_endpoints(experiment, source: Path, allow_endpoint, allow_key_env) -> list[str]:
    """Every endpoint and API-key variable an experiment's models use, as lines to print before any
    cell runs; a ConfigError (one line) when one of them was not confirmed on the command line.
    An experiment file is shared like a model directory, so it gets the same rule."""
    from socialens.classifiers.base import Trust
    from socialens.classifiers.prompted import (
        PromptedParams,
        describe_endpoint,
        endpoint_consent,
        network_endpoint,
    )
    from socialens.core.errors import ConfigError
    from socialens.experiment import validate_model_params

    trust = Trust.of(False, allow_endpoint or (), allow_key_env or ())
    lines, missing = [], []
    for index, entry in enumerate(experiment.models):
        params = validate_model_params(entry, index, str(source))
        endpoint = network_endpoint(params) if isinstance(params, PromptedParams) else None
        if endpoint is None:
            continue
        lines.append(f"model {entry.id} sends {describe_endpoint(endpoint)}")
        missing += [option for option in endpoint_consent(endpoint, trust) if option not in missing]
    if missing:
        used = "; ".join(line.removeprefix("model ") for line in lines)
        raise ConfigError(f"{source}: {used}; to allow this, pass {' '.join(missing)}")
    return lines


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
    save_models: Annotated[
        bool | None,
        typer.Option(
            "--save-models/--no-save-models",
            help="keep every cell's trained model (save_models: all) / none of them (none); default: the "
            "experiment's save_models, else best (the recommended model of each dataset)",
        ),
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="bypass the LLM response cache")] = False,
    allow_endpoint: AllowEndpoint = None,
    allow_key_env: AllowKeyEnv = None,
) -> None:
    """Run an experiment grid, print the comparison table and write runs/<name>/."""
    try:
        from socialens.bench import print_recommendations, print_summary, run_bench
        from socialens.experiment import load_experiment

        experiment = load_experiment(config)
        for line in _confirm_endpoints(experiment, config, allow_endpoint, allow_key_env):
            console.print(line, highlight=False, soft_wrap=True)
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
    print_recommendations(result.recommendations, console)
    print_summary(result.summary, console)
    console.print(f"results: {result.run_dir}/summary.md, summary.json, and one folder per cell")
    try:  # a failed report must not lose the bench results: they are on disk already
        from socialens.evaluation.report import build_report

        files = build_report([result.run_dir])["files"]
        console.print(f"report: {files['html']} (also report.md, report.json)", highlight=False)
    except Exception as exc:  # noqa: BLE001
        console.print(
            Text.assemble(
                ("report failed", "red"),
                f" ({type(exc).__name__}: {exc}); rebuild it with: socialens report {result.run_dir}",
            ),
            highlight=False,
            soft_wrap=True,
        )
    useless = result.all_error_cells()
    if useless:
        cells = ", ".join(f"{cell.dataset} / {cell.model} / seed {cell.seed}" for cell in useless)
        console.print(
            _error_text(
                f"every prediction is an error in {len(useless)} cell(s): {cells}; the error records in "
                "their predictions.jsonl say why"
            ),
            highlight=False,
            soft_wrap=True,
        )
    stopped = [cell for cell in result.stopped_cells() if cell not in useless]
    if stopped:
        cells = ", ".join(f"{cell.dataset} / {cell.model} / seed {cell.seed}" for cell in stopped)
        console.print(
            _error_text(
                f"{len(stopped)} cell(s) stopped before their last text, their server no longer answering: "
                f"{cells}; run bench again once it is up (the answers so far are cached)"
            ),
            highlight=False,
            soft_wrap=True,
        )
    if useless or stopped or any(cell.status == "failed" for cell in result.cells):
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
        if not hardware_price_per_hour >= 0:  # also refuses nan
            raise SocialensError(
                f"--hardware-price-per-hour: expected 0 or more, got {hardware_price_per_hour}"
            )
        result = build_report(run_dirs, out, hardware_price_per_hour=hardware_price_per_hour)
    except (SocialensError, FileNotFoundError, ValueError) as exc:
        _fail(exc)
    for kind in ("html", "md", "json"):
        console.print(f"wrote {result['files'][kind]}", highlight=False, soft_wrap=True)


MEMBER_HELP = "the file to read inside a zip or tar archive, e.g. --member train.tsv (never extracted)"
QUOTING_HELP = "minimal (CSV quoting, the default) or none (double quotes are part of the texts)"


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
    member: Annotated[str | None, typer.Option(help=MEMBER_HELP)] = None,
    quoting: Annotated[str | None, typer.Option(help=QUOTING_HELP)] = None,
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
            require_text=True,  # an empty text is no example, whatever its label
            member=member,
            quoting=quoting or "minimal",
        )
    except SocialensError as exc:
        _fail(exc)
    counts = Counter(ex.label for ex in result.examples)
    console.print(f"{result.file}: {len(result.examples)} valid examples", highlight=False, soft_wrap=True)
    table = Table()
    table.add_column("label")
    table.add_column("count", justify="right")
    table.add_column("share", justify="right")
    for name, count in counts.most_common():
        table.add_row(Text(str(name)), str(count), f"{count / max(1, len(result.examples)):.1%}")
    console.print(table)
    for reason, count in sorted(result.dropped.items()):
        console.print(f"dropped {count} row(s): {reason}")


@data_app.command("split")
def data_split(
    source: Annotated[str, typer.Argument(help="a data file, a dataset YAML or builtin:<name>")],
    out: Annotated[Path, typer.Option(help="output folder for train/dev/test.jsonl")],
    text: Annotated[str, typer.Option(help="text column (data files)")] = "text",
    label: Annotated[str, typer.Option(help="label column (data files)")] = "label",
    id: Annotated[str | None, typer.Option(help="id column (data files; default: row numbers)")] = None,
    labels: Annotated[str | None, typer.Option(help="expected labels, comma-separated")] = None,
    metadata: Annotated[list[str] | None, typer.Option(help="metadata column to keep (repeatable)")] = None,
    seed: Annotated[int, typer.Option(help="split seed")] = 0,
    cap: Annotated[int | None, typer.Option(help="stratified cap on the training set")] = None,
    data_root: Annotated[str | None, typer.Option(help="data root for dataset YAMLs")] = None,
    drop_invalid: Annotated[
        bool, typer.Option(help="drop bad rows and count them instead of failing")
    ] = False,
    member: Annotated[str | None, typer.Option(help=MEMBER_HELP + " (data files)")] = None,
    quoting: Annotated[str | None, typer.Option(help=QUOTING_HELP + " (data files)")] = None,
) -> None:
    """Deduplicate and split stratified 70/20/10 (or keep the dataset's own splits) with a fixed seed."""
    from socialens.data.prepare import describe_stats, write_split

    try:
        _check_at_least(cap=cap)
        _check_at_least(0, seed=seed)
        split = _load_split(
            source, text, label, labels, metadata, seed, cap, data_root, drop_invalid, member, quoting, id
        )
        write_split(split, out)
    except SocialensError as exc:
        _fail(exc)
    console.print(
        f"train {len(split.train)}, dev {len(split.dev)}, test {len(split.test)} -> {out}",
        highlight=False,
        soft_wrap=True,
    )
    for line in describe_stats(split.stats):
        console.print(f"  {line}", highlight=False, soft_wrap=True)


def _load_split(
    source,
    text,
    label,
    labels,
    metadata,
    seed,
    cap,
    data_root,
    drop_invalid,
    member=None,
    quoting=None,
    id_column=None,
):
    from socialens.core.types import LabelSchema
    from socialens.data.datasets import RawDataset, load_dataset, load_dataset_config
    from socialens.data.prepare import prepare
    from socialens.data.readers import read_examples

    if source.startswith("builtin:") or source.endswith((".yaml", ".yml")):
        for option, value in (("--member", member), ("--quoting", quoting), ("--id", id_column)):
            if value is not None:
                raise SocialensError(
                    f"{option} applies to a data file; a dataset YAML names its archive members "
                    "(files: {split: {file, member}}), its quoting (options: {quoting}) and its id "
                    "column (columns: {id}) itself"
                )
        config = load_dataset_config(source, data_root=data_root)
        raw = load_dataset(config, data_root=data_root, drop_invalid=drop_invalid)
    else:
        result = read_examples(
            source,
            text=text,
            label=label,
            id=id_column,
            schema=_parse_labels(labels),
            metadata=_meta(metadata),
            drop_invalid=drop_invalid,
            member=member,
            quoting=quoting or "minimal",
        )
        for reason, count in sorted(result.dropped.items()):
            console.print(f"dropped {count} row(s): {reason}")
        schema = _parse_labels(labels) or LabelSchema.from_names(sorted({ex.label for ex in result.examples}))
        raw = RawDataset(name=Path(member or source).stem, schema=schema, splits={"all": result.examples})
    return prepare(raw, seed=seed, cap=cap)


def _load_training_data(data, text, label, labels, metadata, seed, cap, data_root):
    """--data is a split folder (from `data split`), a dataset YAML / builtin:<name>, or a data file."""
    from socialens.data.prepare import read_split

    path = Path(data)
    if path.is_dir() and (path / "train.jsonl").is_file():
        return read_split(path)
    return _load_split(data, text, label, labels, metadata, seed, cap, data_root, False)


def _record_training_data(out, data, seed, cap, data_root, text, label, labels) -> None:
    """Remember where the split came from, so `export onnx` can re-derive its dev set."""
    from socialens.classifiers.base import update_model_info

    def absolute(value):
        return str(Path(value).resolve()) if value and Path(value).exists() else value

    source = {"data": absolute(data), "seed": seed, "cap": cap, "data_root": absolute(data_root)}
    update_model_info(out, training_data={**source, "text": text, "label": label, "labels": labels})


def _recorded_dev_set(model_dir: Path):
    """(examples, description) of the dev split (else test) the model was trained from, or None."""
    from socialens.classifiers.base import read_model_info

    recorded = read_model_info(model_dir).get("training_data")
    if not recorded:
        return None
    split = _load_training_data(
        recorded["data"],
        recorded.get("text", "text"),
        recorded.get("label", "label"),
        recorded.get("labels"),
        None,
        recorded.get("seed", 0),
        recorded.get("cap"),
        recorded.get("data_root"),
    )
    part = "dev" if split.dev else "test"
    examples = split.dev or split.test
    return (examples, f"{part} split of {recorded['data']}") if examples else None


@export_app.command("onnx")
def export_onnx_command(
    model_dir: Annotated[
        Path,
        typer.Argument(
            help="a model directory of the encoder family, or a run folder (its recommended model)"
        ),
    ],
    dev: Annotated[
        Path | None,
        typer.Option(help="labelled file to check agreement on (default: the recorded dev split)"),
    ] = None,
    text: Annotated[str, typer.Option(help="text column of --dev")] = "text",
    id: Annotated[str | None, typer.Option(help="id column of --dev (default: row numbers)")] = None,
    label: Annotated[str, typer.Option(help="gold label column of --dev (optional in the file)")] = "label",
    quantization: Annotated[
        str,
        typer.Option(
            help="int8 scheme: dynamic (fastest), blockwise (closest to torch), or auto: dynamic when its "
            "labels agree with torch on the dev set at least --min-agreement of the time, else blockwise"
        ),
    ] = "auto",
    min_agreement: Annotated[
        float, typer.Option(help="label agreement with torch that auto asks of the dynamic scheme")
    ] = 0.995,
    trust_pickle: TrustPickle = False,
    dataset: RunDataset = None,
) -> None:
    """Export a fine-tuned encoder to ONNX int8, checked against torch; predict and serve then use it.

    Only the encoder family has an ONNX path: a TF-IDF, prompted, instruct or llm_head model
    directory is refused with one line."""
    from socialens.classifiers.base import check_model_info
    from socialens.data.readers import read_examples
    from socialens.serving.onnx_export import check_model_dir, export_onnx

    try:
        model_dir = _model_of(model_dir, dataset)
        schema = check_model_info(model_dir, check_model_dir(model_dir))
        if dev is not None:
            examples = read_examples(
                dev, text=text, label=label, id=id, schema=schema, require_labels=False
            ).examples
            found = (examples, str(dev))
        else:
            found = _recorded_dev_set(model_dir)
        report = export_onnx(
            model_dir,
            found[0] if found else None,
            dev_source=found[1] if found else "",
            quantization=quantization,
            min_agreement=min_agreement,
            trust_pickle=trust_pickle,
        )
    except SocialensError as exc:
        _fail(exc)
    for line in report.lines():
        console.print(line, highlight=False, soft_wrap=True)


@app.command()
def train(
    family: Annotated[str, typer.Argument(help=f"model family: {FAMILY_NAMES}")],
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
    from socialens.core.progress import stage_progress

    try:
        _check_at_least(cap=cap, epochs=epochs)
        _check_at_least(0, seed=seed)
        family_cls = get_family(family)
        overrides = {k: v for k, v in {"model": model, "epochs": epochs}.items() if v is not None}
        unknown = set(overrides) - set(family_cls.Params.model_fields)
        if unknown:
            raise SocialensError(f"--{sorted(unknown)[0]} does not apply to the '{family}' family")
        split = _load_training_data(data, text, label, labels, None, seed, cap, data_root)
        if split.task_type == "classification":
            present = sorted({ex.label for ex in split.train if ex.label is not None})
            if len(present) < 2:
                raise SocialensError(
                    f"{data}: the training split ({len(split.train)} examples) has {len(present)} distinct "
                    "label(s); expected at least two to train a classifier"
                )
        elif not any(ex.label is not None for ex in split.train):
            raise SocialensError(
                f"{data}: no training example has a target; expected a labelled training split"
            )
        classifier = family_cls(params=family_cls.Params(**overrides), seed=seed)
        console.print(f"training {family} on {len(split.train)} examples (dev {len(split.dev)})")
        with stage_progress(console, classifier):
            classifier.fit(
                split.train, split.dev, schema=split.schema, task=split.task, task_type=split.task_type
            )
        classifier.save(out)
        _record_training_data(out, data, seed, cap, data_root, text, label, labels)
        _score_splits(classifier, split, out)
    except SocialensError as exc:
        _fail(exc)
    console.print(f"saved model to {out}")


def _score_splits(classifier, split, out: Path) -> None:
    """Score the dev and test splits, one line each, and record the metrics in the model info,
    where GET /v1/model reports them (``evaluation``)."""
    from socialens.classifiers.base import update_model_info
    from socialens.core.registry import TASKS
    from socialens.evaluation.metrics import compute_metrics

    evaluation = {}
    task = TASKS.get(split.task_type)()
    for part, examples in (("dev", split.dev), ("test", split.test)):
        if not examples:
            continue
        metrics = compute_metrics(
            classifier.predict(examples), split.schema.names, n_bootstrap=1000, task_type=split.task_type
        )
        if not metrics["n"]:
            continue
        if split.task_type == "classification":
            lo, hi = metrics["ci"]["macro_f1"]
            console.print(
                f"{part} macro-F1 {metrics['macro_f1']:.3f} [95% CI {lo:.3f}, {hi:.3f}], "
                f"accuracy {metrics['accuracy']:.3f} on {metrics['n']} examples",
                highlight=False,
            )
        else:
            headline = task.headline_metric
            interval = metrics.get("ci", {}).get(headline)
            shown = f" [95% CI {interval[0]:.3f}, {interval[1]:.3f}]" if interval else ""
            console.print(
                f"{part} {headline} {metrics[headline]:.3f}{shown} on {metrics['n']} examples",
                highlight=False,
            )
        evaluation[part] = {"source": "socialens train", **metrics}
    if evaluation:
        update_model_info(out, evaluation=evaluation)


@app.command()
def predict(
    model_dir: Annotated[Path, typer.Argument(help=MODEL_OR_RUN)],
    input: Annotated[Path, typer.Argument(help="CSV, TSV, JSONL or Parquet file to label")],
    out: Annotated[Path, typer.Option(help="output file: .jsonl, .csv or .parquet")],
    text: Annotated[str, typer.Option(help="text column")] = "text",
    id: Annotated[
        str | None, typer.Option(help="id column (default: a column named id, else row numbers)")
    ] = None,
    label: Annotated[str | None, typer.Option(help="gold label column, to also print scores")] = None,
    metadata: Annotated[
        list[str] | None, typer.Option(help="input column copied to the output (repeatable)")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="examples per prediction batch")] = 256,
    chunk_size: Annotated[int, typer.Option(help="rows read, written and committed at a time")] = 4096,
    force: Annotated[
        bool,
        typer.Option(
            help="start over instead of resuming an interrupted run into --out, or overwrite an --out "
            "that a run with other arguments (or no recorded run) wrote"
        ),
    ] = False,
    engine: Annotated[
        str, typer.Option(help="local, or ray (Ray Data; RAY_ADDRESS or a local Ray)")
    ] = "local",
    ray_actors: Annotated[int, typer.Option(help="model actors with --engine ray")] = 2,
    trust_pickle: TrustPickle = False,
    allow_endpoint: AllowEndpoint = None,
    allow_key_env: AllowKeyEnv = None,
    quoting: Annotated[str, typer.Option(help=QUOTING_HELP + " (CSV and TSV input)")] = "minimal",
    dataset: RunDataset = None,
) -> None:
    """Label a file of any size, streaming; every input row yields exactly one output row.
    An interrupted run restarted with the same arguments resumes where it stopped."""
    from socialens.classifiers.base import load_classifier
    from socialens.core.interrupts import INTERRUPTED_EXIT, stop_promptly_on_sigint
    from socialens.core.registry import TASKS
    from socialens.data.stream import RowStream
    from socialens.evaluation.metrics import compute_metrics
    from socialens.predict import interrupted_message, predict_stream
    from socialens.predict_output import has_raw_output, read_output_records

    try:
        # Ctrl-C ends the run within seconds, even inside native code: committed rows resume
        with stop_promptly_on_sigint(lambda: interrupted_message(out)):
            if engine not in ("local", "ray"):
                raise SocialensError(f"--engine {engine}: expected local or ray")
            _check_at_least(batch_size=batch_size, chunk_size=chunk_size, ray_actors=ray_actors)
            load_options = _load_options(trust_pickle, allow_endpoint, allow_key_env)
            model_dir = _model_of(model_dir, dataset)
            classifier = load_classifier(model_dir, **load_options)
            if label is not None and TASKS.get(classifier.task_type).target_form != "label":
                raise SocialensError(
                    f"--label {label}: predict scores a column of gold labels, but this model's task is "
                    f"{classifier.task_type}; score it on a dataset with socialens bench"
                )
            stream = RowStream(
                input,
                text=text,
                label=label,
                id=id,
                metadata=_meta(metadata),
                schema=classifier.schema,
                quoting=quoting,
            )
            options = dict(model_dir=model_dir, chunk_rows=chunk_size, batch_size=batch_size, force=force)
            if engine == "ray":
                from socialens.predict_ray import predict_stream_ray

                summary = predict_stream_ray(
                    stream,
                    out,
                    labels=classifier.schema.names,
                    actors=ray_actors,
                    console=console,
                    load_options=load_options,
                    raw_output=has_raw_output(classifier),
                    **options,
                )
            else:
                summary = predict_stream(classifier, stream, out, console=console, **options)
    except SocialensError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        console.print(interrupted_message(out), highlight=False, soft_wrap=True)
        raise typer.Exit(code=INTERRUPTED_EXIT) from None
    resumed = f" (resumed after row {summary.resumed_from:,})" if summary.resumed_from else ""
    counts = ", ".join(f"{n:,} {status}" for status, n in sorted(summary.statuses.items()))
    console.print(
        f"wrote {summary.rows:,} predictions to {out}{resumed}: {counts}; {summary.rows_per_s:,.0f} rows/s",
        highlight=False,
        soft_wrap=True,
    )
    for status, example in sorted(summary.first_problem.items()):
        console.print(f"first {status} row: {example}", highlight=False, soft_wrap=True)
    if label is not None:
        records = [r for r in read_output_records(out) if r.gold is not None]
        if records:
            metrics = compute_metrics(records, classifier.schema.names, n_bootstrap=1000)
            console.print(f"macro-F1 {metrics['macro_f1']:.3f}, accuracy {metrics['accuracy']:.3f}")


@app.command()
def serve(
    model_dir: Annotated[Path, typer.Argument(help=MODEL_OR_RUN)],
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port, 1-65535")] = 8080,
    token_env: Annotated[
        str | None, typer.Option(help="environment variable holding the bearer token (default: no auth)")
    ] = None,
    max_batch: Annotated[int, typer.Option(help="most texts in one model call")] = 64,
    max_wait_ms: Annotated[float, typer.Option(help="longest wait for more texts to fill a batch")] = 5.0,
    max_texts: Annotated[int, typer.Option(help="most texts per request (more: 413)")] = 256,
    max_chars: Annotated[int, typer.Option(help="most characters per text (more: 422)")] = 10_000,
    max_body_bytes: Annotated[
        int | None,
        typer.Option(
            help="largest request body in bytes, checked before parsing (more: 413; default: "
            "max-texts * (6 * max-chars + 256) + 64 KiB, room for fully JSON-escaped texts)"
        ),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="torch threads for inference (default: all cores but one)")
    ] = None,
    body_timeout_s: Annotated[
        float, typer.Option(help="seconds the whole request body may take to arrive (more: 408, closed)")
    ] = 10.0,
    header_timeout_s: Annotated[
        float, typer.Option(help="seconds a request's headers may take to arrive (more: 408, closed)")
    ] = 5.0,
    keep_alive_s: Annotated[float, typer.Option(help="seconds an idle connection stays open")] = 5.0,
    max_connections: Annotated[int, typer.Option(help="open connections in all (more: 503)")] = 512,
    max_connections_per_client: Annotated[
        int, typer.Option(help="open connections from one IP address (more: 429; 0: no cap)")
    ] = 64,
    trust_pickle: TrustPickle = False,
    allow_endpoint: AllowEndpoint = None,
    allow_key_env: AllowKeyEnv = None,
    dataset: RunDataset = None,
) -> None:
    """Serve a trained model over HTTP: POST /v1/classify, GET /v1/model, /healthz, docs at /docs."""
    from socialens.serving.app import ServiceSettings
    from socialens.serving.server import build_server, read_token

    try:
        settings = ServiceSettings(
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            max_texts=max_texts,
            max_chars=max_chars,
            max_body_bytes=max_body_bytes,
            threads=threads,
            token=read_token(token_env),
            body_timeout_s=body_timeout_s,
            header_timeout_s=header_timeout_s,
            keep_alive_s=keep_alive_s,
            max_connections=max_connections,
            max_connections_per_client=max_connections_per_client,
        )
        found = _run_model(model_dir, dataset)
        model_dir = found.path
        server = build_server(
            model_dir,
            host,
            port,
            settings,
            model_id=found.model,
            **_load_options(trust_pickle, allow_endpoint, allow_key_env),
        )
    except SocialensError as exc:
        _fail(exc)
    auth = f"bearer token from ${token_env}" if token_env else "no auth"
    console.print(f"serving {model_dir} on http://{host}:{port} ({auth}); docs at /docs", highlight=False)
    server.run()


@app.command()
def models() -> None:
    """List the built-in models (they ship in PyPI packages and work offline)."""
    from socialens.core.models import BUILTIN_MODELS

    for name, info in BUILTIN_MODELS.items():
        console.print(f"builtin:{name}  {info.description}")


@instruct_app.command("build")
def instruct_build(
    config: Annotated[Path, typer.Argument(help="instruction mix YAML (datasets, cap, seed, shuffle)")],
    out: Annotated[Path, typer.Option(help="output folder for train/dev/test.jsonl and stats.json")],
    shuffle: Annotated[
        str | None,
        typer.Option(help="alphabetical | within_language | by_task | random (default: the mix's)"),
    ] = None,
    cap: Annotated[int | None, typer.Option(help="stratified cap per dataset's train split")] = None,
    seed: Annotated[int | None, typer.Option(help="sampling and shuffling seed (default: the mix's)")] = None,
    data_root: Annotated[str | None, typer.Option(help="data root for dataset YAMLs")] = None,
) -> None:
    """Mix datasets into chat-format JSONL, one sampled instruction per example, in one training order."""
    from socialens.tuning.mix import build_mix, load_mix, print_stats

    try:
        stats = build_mix(
            load_mix(config), out, shuffle=shuffle, cap=cap, seed=seed, data_root=data_root, console=console
        )
    except SocialensError as exc:
        _fail(exc)
    print_stats(stats, console)
    console.print(f"wrote {', '.join(stats['files'].values())} and {out / 'stats.json'}", highlight=False)


@instruct_app.command("generate")
def instruct_generate(
    dataset: Annotated[str, typer.Argument(help="dataset YAML or builtin:<name>")],
    out: Annotated[Path, typer.Option(help="instruction YAML to write (review it before use)")],
    task: Annotated[str, typer.Option(help="short task key, e.g. hate_speech (groups datasets by task)")],
    backend: Annotated[str, typer.Option(help="LLM backend: llamacpp | hf | openai")] = "llamacpp",
    model: Annotated[str, typer.Option(help="model for the backend")] = "builtin:smollm2-135m-instruct",
    n: Annotated[int, typer.Option(help="instructions to request")] = 20,
    max_tokens: Annotated[int, typer.Option(help="tokens per generated instruction")] = 120,
    seed: Annotated[int, typer.Option(help="sampling seed of the first request")] = 0,
) -> None:
    """Generate paraphrased instructions from a dataset's metadata; keep those naming every label."""
    from rich.progress import Progress

    from socialens.data.datasets import load_dataset_config
    from socialens.llm.base import get_backend
    from socialens.tuning.instructions import generate_instruction_set, write_instruction_set

    try:
        dataset_config = load_dataset_config(dataset)
        schema = dataset_config.to_schema()
        llm = get_backend(backend)(model)
        with Progress(console=console) as progress:
            bar = progress.add_task(f"generating for {dataset_config.name}", total=n)
            instruction_set, report = generate_instruction_set(
                llm,
                dataset=dataset_config.name,
                language=dataset_config.language,
                task=task,
                task_definition=dataset_config.task,
                labels=schema.names,
                descriptions=[label.description for label in schema.labels],
                n=n,
                max_tokens=max_tokens,
                seed=seed,
                on_step=lambda: progress.advance(bar),
            )
        write_instruction_set(instruction_set, out, header=f"generation: {report.to_dict()}")
    except SocialensError as exc:
        _fail(exc)
    dropped = ", ".join(f"{count} {reason}" for reason, count in sorted(report.dropped.items())) or "none"
    console.print(f"kept {report.kept} of {report.requested} (dropped: {dropped}) -> {out}", highlight=False)


@instruct_app.command("train")
def instruct_train(
    data_dir: Annotated[Path, typer.Argument(help="folder with train.jsonl chat records (instruct build)")],
    out: Annotated[Path, typer.Option(help="output folder: adapter/, checkpoints/, train_report.json")],
    base: Annotated[str, typer.Option(help="base instruct LLM (builtin:<name>, folder or hub id)")] = (
        "builtin:smollm2-135m-instruct"
    ),
    lora_r: Annotated[int, typer.Option(help="LoRA rank")] = 16,
    epochs: Annotated[float, typer.Option(help="training epochs")] = 2,
    lr: Annotated[float, typer.Option(help="learning rate (AdamW, linear schedule)")] = 2e-4,
    batch_size: Annotated[int, typer.Option(help="examples per step (per device)")] = 16,
    max_length: Annotated[
        int, typer.Option(help="tokens per record (a longer example text is cut at its end)")
    ] = 512,
    max_examples: Annotated[int | None, typer.Option(help="train on the first N records only")] = None,
    resume: Annotated[bool, typer.Option(help="continue from the last checkpoint in OUT")] = False,
    merge: Annotated[bool, typer.Option(help="also write OUT/merged: the base with the adapter in")] = False,
    qlora: Annotated[bool, typer.Option(help="4-bit base (needs bitsandbytes and a CUDA GPU)")] = False,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads")] = None,
    sampling: Annotated[
        str,
        typer.Option(
            help="sequential: train in the file's order (the shuffle strategy chosen at build time); "
            "random or group_by_length: let the trainer reorder"
        ),
    ] = "sequential",
) -> None:
    """LoRA-tune an instruct LLM on chat records (LlamaLens: r 16, alpha 32, lr 2e-4, 2 epochs, batch 16)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from socialens.classifiers.instruct import write_trained_model_info
    from socialens.tuning.lora import LoraParams, read_chat_records, train_lora

    try:
        _check_at_least(max_examples=max_examples)
        options = {"r": "--lora-r", "alpha": "--lora-r", "learning_rate": "--lr", "num_threads": "--threads"}
        params = _checked_params(
            LoraParams,
            options,
            r=lora_r,
            alpha=2 * lora_r,
            epochs=epochs,
            learning_rate=lr,
            batch_size=batch_size,
            max_length=max_length,
            merge=merge,
            qlora=qlora,
            num_threads=threads,
            sampling=sampling,
        )
        records = read_chat_records(data_dir / "train.jsonl")[:max_examples]
        console.print(f"LoRA-tuning {base} on {len(records)} records from {data_dir}", highlight=False)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console) as progress:
            bar = progress.add_task("training steps", total=None)
            report = train_lora(
                records,
                base,
                out,
                params,
                progress=lambda stage, done, total: progress.update(bar, completed=done, total=total),
                resume=resume,
            )
        loadable = write_trained_model_info(out, records, base, params)
    except (SocialensError, ValueError) as exc:
        _fail(exc)
    console.print(
        f"{report.steps} steps in {report.train_time_s:.0f} s ({report.examples_per_s} examples/s), "
        f"peak RSS {report.peak_rss_mb:.0f} MiB; answer loss {report.loss_before} -> {report.loss_after}",
        highlight=False,
    )
    console.print(f"adapter: {report.adapter_dir}", highlight=False)
    if loadable:
        console.print(f"a single-dataset model: `socialens predict {out} FILE` uses it", highlight=False)


add_examples(app)


def main() -> None:  # pragma: no cover - console entry
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app()
    except SocialensError as exc:
        console.print(_error_text(exc), highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
