"""A run folder as the place a model comes from: ``serve``, ``predict`` and ``export onnx`` take
``runs/<name>`` and use the model bench recommended and kept there (``summary.json``'s
``recommendations``).

A run folder is a shared file like a model directory (DESIGN.md, "Trust boundaries"): what its
``summary.json`` says is read as data, and the model folder it names must resolve, symlinks
followed, inside the run folder; anything else is a one-line error. The model directory's own
rules (no pickle without ``--trust-pickle``, endpoints and key variables only when allowed) apply
afterwards, when it is loaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from socialens.classifiers.base import MODEL_INFO_FILE
from socialens.core.errors import ConfigError
from socialens.core.layout import RunLayout
from socialens.core.paths import is_inside
from socialens.evaluation.recommendation import RECOMMENDATIONS_KEY


@dataclass(frozen=True)
class RunModel:
    """The model a command uses: its folder and, when it came from a run, what chose it."""

    path: Path
    run_dir: Path | None = None
    dataset: str | None = None
    model: str | None = None
    sentence: str | None = None

    def describe(self) -> str | None:
        """One line saying which model of which run is used; None for a plain model directory."""
        if self.run_dir is None:
            return None
        return (
            f"run {self.run_dir}: using the recommended model of {self.dataset}, {self.model} ({self.path})"
        )


def is_run_dir(path: str | Path) -> bool:
    layout = RunLayout(Path(path))
    return layout.summary_json.is_file() and layout.experiment_file.is_file()


def resolve_model(path: str | Path, dataset: str | None = None) -> RunModel:
    """``path`` itself when it is a model directory (or nothing socialens wrote: loading it then
    says what is missing); the recommended, kept model when it is a run folder."""
    path = Path(path)
    if (path / MODEL_INFO_FILE).is_file() and not is_run_dir(path):
        if dataset is not None:
            raise ConfigError(
                f"--dataset {dataset}: {path} is a model directory, not a run directory; "
                "--dataset picks a dataset of a run folder written by bench"
            )
        return RunModel(path)
    if not is_run_dir(path):
        if dataset is None:
            return RunModel(path)
        raise ConfigError(
            f"{path}: not a run directory (no summary.json and experiment.yaml); expected a run folder "
            "written by socialens bench, e.g. runs/<experiment name>"
        )
    return recommended_model(path, dataset)


def recommended_model(run_dir: Path, dataset: str | None) -> RunModel:
    layout = RunLayout(run_dir)
    source = layout.summary_json
    try:
        summary = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(
            f"{source}: unreadable ({type(exc).__name__}); expected the JSON bench writes"
        ) from None
    recommendations = summary.get(RECOMMENDATIONS_KEY) if isinstance(summary, dict) else None
    if not isinstance(recommendations, dict) or not recommendations:
        raise ConfigError(
            f"{run_dir}: the run recommends no model (no finished model, or a summary.json from before "
            "recommendations); run socialens bench on its experiment again"
        )
    names = sorted(str(name) for name in recommendations)
    if dataset is None:
        if len(names) > 1:
            raise ConfigError(
                f"{run_dir}: the run has {len(names)} datasets ({', '.join(names)}); "
                "pass --dataset NAME to pick one"
            )
        dataset = names[0]
    rec = recommendations.get(dataset)
    if not isinstance(rec, dict):
        raise ConfigError(
            f"--dataset {dataset}: not a dataset of run {run_dir}; expected one of {', '.join(names)}"
        )
    field = f"{RECOMMENDATIONS_KEY}.{dataset}.model_dir"
    relative = rec.get("model_dir")
    if not isinstance(relative, str) or not relative:
        raise ConfigError(
            f"{source}: field '{field}' is missing or not a string; expected <dataset>/<model>/seed-<n>/model"
        )
    candidate = run_dir / relative
    if (
        PurePosixPath(relative).is_absolute()
        or Path(relative).is_absolute()
        or not is_inside(candidate, run_dir)
    ):
        raise ConfigError(
            f"{source}: field '{field}' = {relative!r}: resolves outside the run directory {run_dir}; "
            "expected a folder inside the run"
        )
    model = str(rec.get("recommended") or "?")
    if not (candidate / MODEL_INFO_FILE).is_file():
        raise ConfigError(
            f"{run_dir}: the run kept no model for dataset {dataset} (recommended: {model}); run socialens "
            "bench with save_models: best (the default) or --save-models best, and --force if its cells "
            "already finished without saving"
        )
    return RunModel(
        candidate.resolve(),
        run_dir=run_dir,
        dataset=dataset,
        model=model,
        sentence=rec.get("sentence") if isinstance(rec.get("sentence"), str) else None,
    )
