"""The run folder ``socialens bench`` writes and ``socialens report`` reads, named in one place.

::

    <output_dir>/<experiment>/                      RunLayout(root)
        experiment.yaml                             the resolved experiment (experiment_file)
        summary.md, summary.json                    the recommendation per dataset, the summary table and its rows
        report.html, report.md, report.json         socialens report (report_files)
        <dataset>/
            split.json                              schema, split statistics, task type
            test.jsonl                              the test examples (texts for the report)
            <model id>/
                tokenizer_coverage.json             the tokenizer check, where the family has one
                seed-<n>/                           CellLayout
                    predictions.jsonl               one PredictionRecord per test example
                    metrics.json                    metrics, costs and cell fingerprint
                    error.txt                       the traceback of a failed cell
                    model/                          the trained model (save_models: best keeps only the
                                                    recommended one, with MODEL_CARD.md; all: every cell's)

Names under a run (dataset, model id) are safe names (``core.paths``), so a path built here never
leaves its run; bench still checks each folder it writes (``bench.inside_run_dir``) against
symlinks planted in the run folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

EXPERIMENT_FILE = "experiment.yaml"
SUMMARY_MD = "summary.md"
SUMMARY_JSON = "summary.json"
REPORT_FILES = {"json": "report.json", "md": "report.md", "html": "report.html"}
SPLIT_FILE = "split.json"
TEST_FILE = "test.jsonl"
COVERAGE_FILE = "tokenizer_coverage.json"
SEED_PREFIX = "seed-"
PREDICTIONS_FILE = "predictions.jsonl"
METRICS_FILE = "metrics.json"
ERROR_FILE = "error.txt"
MODEL_DIR = "model"
# split.json / metrics.json / summary rows: the task of the dataset; absent means classification
TASK_TYPE_KEY = "task_type"
DEFAULT_TASK_TYPE = "classification"


def seed_dir_name(seed: int) -> str:
    return f"{SEED_PREFIX}{seed}"


def seed_of(cell_dir: str | Path) -> int | None:
    """The seed a ``seed-<n>`` folder holds, or None for any other name."""
    name = Path(cell_dir).name
    if not name.startswith(SEED_PREFIX):
        return None
    try:
        return int(name[len(SEED_PREFIX) :])
    except ValueError:
        return None


@dataclass(frozen=True)
class CellLayout:
    """One dataset x model x seed cell of a run."""

    dir: Path
    seed: int

    @property
    def predictions(self) -> Path:
        return self.dir / PREDICTIONS_FILE

    @property
    def metrics(self) -> Path:
        return self.dir / METRICS_FILE

    @property
    def error(self) -> Path:
        return self.dir / ERROR_FILE

    @property
    def model(self) -> Path:
        return self.dir / MODEL_DIR


@dataclass(frozen=True)
class RunLayout:
    """The paths of one run folder (``<output_dir>/<experiment name>``), written or read."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @classmethod
    def of(cls, output_dir: str | Path, experiment: str) -> RunLayout:
        return cls(Path(output_dir) / experiment)

    # ------------------------------------------------------------ files of the run

    @property
    def experiment_file(self) -> Path:
        return self.root / EXPERIMENT_FILE

    @property
    def summary_md(self) -> Path:
        return self.root / SUMMARY_MD

    @property
    def summary_json(self) -> Path:
        return self.root / SUMMARY_JSON

    @staticmethod
    def report_files(out_dir: str | Path) -> dict[str, Path]:
        """``{"json": .../report.json, "md": ..., "html": ...}`` in ``out_dir`` (a run folder by
        default, any folder for a merged report)."""
        return {kind: Path(out_dir) / name for kind, name in REPORT_FILES.items()}

    # ------------------------------------------------------------ per dataset and model

    def dataset_dir(self, dataset: str) -> Path:
        return self.root / dataset

    def split_file(self, dataset: str) -> Path:
        return self.dataset_dir(dataset) / SPLIT_FILE

    def test_file(self, dataset: str) -> Path:
        return self.dataset_dir(dataset) / TEST_FILE

    def model_dir(self, dataset: str, model: str) -> Path:
        """The folder of one model entry on one dataset (its seeds' cells and coverage file)."""
        return self.dataset_dir(dataset) / model

    def coverage_file(self, dataset: str, model: str) -> Path:
        return self.model_dir(dataset, model) / COVERAGE_FILE

    def cell(self, dataset: str, model: str, seed: int) -> CellLayout:
        return CellLayout(self.model_dir(dataset, model) / seed_dir_name(seed), seed)

    # ------------------------------------------------------------ what a run holds

    def datasets(self) -> list[str]:
        """The dataset folders of the run, sorted by name."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir())

    def cells(self, dataset: str, model: str) -> list[CellLayout]:
        """The cells of one model that hold predictions, by seed."""
        folder = self.model_dir(dataset, model)
        if not folder.is_dir():
            return []
        found = []
        for path in folder.iterdir():
            seed = seed_of(path)
            if seed is not None and path.is_dir() and (path / PREDICTIONS_FILE).is_file():
                found.append(CellLayout(path, seed))
        return sorted(found, key=lambda cell: cell.seed)

    def models(self, dataset: str) -> list[str]:
        """The model folders of one dataset with at least one cell of predictions, by name."""
        folder = self.dataset_dir(dataset)
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and self.cells(dataset, p.name))
