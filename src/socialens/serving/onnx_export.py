"""Export a fine-tuned encoder to ONNX, quantise it to int8, and measure how far it drifts from torch.

``export_onnx(model_dir)`` writes ``<model_dir>/onnx/model.onnx`` (fp32, dynamic batch and sequence
axes) and ``<model_dir>/onnx/model_int8.onnx`` (an int8 copy), then, given dev examples, predicts them
through torch and through the int8 model and records the agreement in the model's
socialens_model.json. From then on EncoderClassifier.load predicts through the int8 model unless
asked for engine="torch".

Two int8 schemes (measured in docs/benchmarks.md, MiniLM fine-tuned on TweetEval hate):
- "dynamic": onnxruntime quantize_dynamic, int8 per-channel weights and activations quantised with
  one scale per tensor at run time. The fastest (about 2.6x our torch path), but it changed 1-3% of
  the labels, enough to move macro-F1 by 0.5-1.6 points.
- "blockwise": MatMulNBits, 8-bit weights with one scale per block of BLOCK_SIZE input channels and
  accuracy_level 4 (int8 compute on activations quantised per block). About 1.3-1.7x torch, and
  99.5-99.8% of torch's labels on the same models (macro-F1 within 0.16-0.54 points).
"auto", the default, keeps dynamic when it agrees with torch on the dev examples at least
``min_agreement`` of the time and otherwise takes blockwise; without dev examples it takes blockwise,
the scheme that needs no check to be trusted.

Token-classification and multilabel encoders export the same way (their logits output has a
sequence axis, or goes through a sigmoid instead of a softmax); their agreement with torch is
``TaskAgreement``: predictions equal per example (a sentence's whole tag list, a text's label set),
the largest probability difference (per-token top probability, per-label sigmoid), and the head's
dev metric (entity micro-F1, micro-F1) under each engine.

torch 2.13's default exporter (dynamo) needs onnxscript; the TorchScript exporter (dynamo=False)
needs nothing more and handles BERT-style encoders, so it is used here. Its trace is checked
against torch on the dev examples rather than trusted.
"""

from __future__ import annotations

import copy
import logging
import shutil
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from socialens.classifiers.base import MODEL_INFO_FILE, Trust, read_model_info, update_model_info
from socialens.classifiers.onnx_session import FP32_FILE, INT8_FILE, ONNX_DIR, OnnxEncoderSession
from socialens.core.errors import ConfigError
from socialens.core.types import Example, PredictionRecord

OPSET = 17
QUANTIZATIONS = ("auto", "dynamic", "blockwise")
MIN_AGREEMENT = 0.995
BLOCK_SIZE = 128
# two texts of different lengths, so the traced graph sees real padding and a batch above one
TRACE_TEXTS = ["an example sentence to trace the encoder with", "a short one"]


@dataclass
class Agreement:
    """How the int8 ONNX model compares with torch on the same examples."""

    source: str
    n_examples: int
    label_agreement: float
    max_abs_prob_diff: float
    n_labelled: int = 0
    macro_f1_torch: float | None = None
    macro_f1_onnx: float | None = None


@dataclass
class TaskAgreement(Agreement):
    """Agreement of a token-classification or multilabel encoder: ``label_agreement`` counts
    examples whose whole prediction (tag list, label set) is the same; ``metric`` is the head's
    dev metric, under each engine, on the examples with a gold target."""

    metric: str = ""
    metric_torch: float | None = None
    metric_onnx: float | None = None


@dataclass
class ExportReport:
    model_dir: str
    fp32_path: str
    int8_path: str
    fp32_bytes: int
    int8_bytes: int
    export_s: float
    quantize_s: float
    opset: int = OPSET
    quantization: str = "dynamic"
    agreement: Agreement | None = None
    # auto: each scheme tried, with its agreement on the dev examples
    tried: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        """The human-readable summary the CLI prints."""
        out = [
            f"fp32 {self.fp32_path} ({self.fp32_bytes / 1e6:.1f} MB, exported in {self.export_s:.1f} s)",
            f"int8 {self.int8_path} ({self.int8_bytes / 1e6:.1f} MB, "
            f"{self.int8_bytes / self.fp32_bytes:.0%} of fp32, {self.quantization} int8, "
            f"quantised in {self.quantize_s:.1f} s)",
        ]
        out += [
            f"tried {t['quantization']}: labels agree with torch on {t['label_agreement']:.2%}"
            for t in self.tried
        ]
        a = self.agreement
        if a is None:
            out += self.notes or ["agreement with torch was not checked"]
            return out
        out.append(
            f"agreement with torch on {a.n_examples} examples ({a.source}): labels {a.label_agreement:.2%}, "
            f"max |probability difference| {a.max_abs_prob_diff:.4f}"
        )
        if a.n_labelled and isinstance(a, TaskAgreement):
            out.append(
                f"{a.metric} on {a.n_labelled} labelled examples: torch {a.metric_torch:.4f}, "
                f"onnx int8 {a.metric_onnx:.4f} ({100 * (a.metric_onnx - a.metric_torch):+.2f} points)"
            )
        elif a.n_labelled:
            out.append(
                f"macro-F1 on {a.n_labelled} labelled examples: torch {a.macro_f1_torch:.4f}, "
                f"onnx int8 {a.macro_f1_onnx:.4f} ({100 * (a.macro_f1_onnx - a.macro_f1_torch):+.2f} points)"
            )
        return out + self.notes


def check_model_dir(model_dir: str | Path) -> dict[str, Any]:
    """The model info of an encoder model directory, or a one-line ConfigError saying what is wrong."""
    model_dir = Path(model_dir)
    if not (model_dir / MODEL_INFO_FILE).is_file():
        raise ConfigError(f"{model_dir}: not a socialens model directory (missing {MODEL_INFO_FILE})")
    info = read_model_info(model_dir)
    if info.get("family") != "encoder":
        raise ConfigError(
            f"{model_dir}: ONNX export needs an 'encoder' model, this one is '{info.get('family')}'"
        )
    if not any((model_dir / name).is_file() for name in ("model.safetensors", "pytorch_model.bin")):
        raise ConfigError(f"{model_dir}: no model.safetensors; expected the weights saved by train or bench")
    return info


def _trace_to_onnx(classifier, path: Path) -> None:
    import torch

    tokenizer, model = classifier.tokenizer_, classifier.model_.cpu().eval()
    batch = tokenizer(TRACE_TEXTS, padding=True, return_tensors="pt")
    names = [name for name in tokenizer.model_input_names if name in batch]

    class LogitsOnly(torch.nn.Module):
        """Positional inputs in ``names`` order: the TorchScript exporter binds inputs by position,
        and the model's forward() orders them differently from the tokenizer."""

        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *tensors):
            return self.model(**dict(zip(names, tensors, strict=True))).logits

    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    logit_axes = {0: "batch", 1: "sequence"} if classifier.head.per_token else {0: "batch"}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        # the exporter's deprecation notice and tracer warnings about python-bool branches on
        # shapes: the graph is verified numerically against torch instead
        warnings.simplefilter("ignore")
        torch.onnx.export(
            LogitsOnly().eval(),
            tuple(batch[name] for name in names),
            str(path),
            input_names=names,
            output_names=["logits"],
            dynamic_axes={**axes, "logits": logit_axes},
            opset_version=OPSET,
            dynamo=False,
            do_constant_folding=True,
        )


def _quantize(fp32: Path, int8: Path, scheme: str) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    # its "consider pre-processing" advice goes to the root logger; that pre-processing's symbolic
    # shape inference fails on this graph, and the result is checked against torch anyway
    root.setLevel(logging.ERROR)
    try:
        if scheme == "blockwise":
            from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

            quantizer = MatMulNBitsQuantizer(
                str(fp32),
                bits=8,
                block_size=BLOCK_SIZE,
                is_symmetric=True,
                accuracy_level=4,  # int8 compute, activations quantised per block
                op_types_to_quantize=("MatMul",),
            )
            quantizer.process()
            quantizer.model.save_model_to_file(str(int8), False)
        else:
            # per-channel weight scales: half the probability drift of per-tensor ones at the same speed
            quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        root.setLevel(level)


def agreement(
    torch_records: list[PredictionRecord],
    onnx_records: list[PredictionRecord],
    labels: list[str],
    source: str,
) -> Agreement:
    """Label agreement and probability drift between two engines' records of the same examples,
    and macro-F1 of each on the examples that have a gold label."""
    from socialens.evaluation.metrics import compute_metrics

    pairs = list(zip(torch_records, onnx_records, strict=True))
    same = sum(a.predicted == b.predicted for a, b in pairs)
    drift = max((abs(a.scores[k] - b.scores[k]) for a, b in pairs for k in labels), default=0.0)
    result = Agreement(
        source=source,
        n_examples=len(pairs),
        label_agreement=same / len(pairs) if pairs else 1.0,
        max_abs_prob_diff=float(drift),
    )
    labelled = sum(r.gold is not None for r in torch_records)
    if labelled:
        result.n_labelled = labelled
        result.macro_f1_torch = compute_metrics(torch_records, labels, n_bootstrap=0)["macro_f1"]
        result.macro_f1_onnx = compute_metrics(onnx_records, labels, n_bootstrap=0)["macro_f1"]
    return result


def record_probabilities(record: PredictionRecord) -> list[float]:
    """The probabilities a record carries: per-label scores, else per-token top probabilities."""
    if record.scores is not None:
        return list(record.scores.values())
    return [p for p in (record.details or {}).get("confidence", []) if p is not None]


def task_agreement(
    torch_records: list[PredictionRecord], onnx_records: list[PredictionRecord], head, source: str
) -> TaskAgreement:
    """``agreement`` for a token-classification or multilabel encoder (``head``: its EncoderHead)."""
    pairs = list(zip(torch_records, onnx_records, strict=True))
    drift = 0.0
    for a, b in pairs:
        pa, pb = record_probabilities(a), record_probabilities(b)
        if len(pa) == len(pb):
            drift = max([drift, *(abs(x - y) for x, y in zip(pa, pb, strict=True))])
    result = TaskAgreement(
        source=source,
        n_examples=len(pairs),
        label_agreement=sum(a.predicted == b.predicted for a, b in pairs) / len(pairs) if pairs else 1.0,
        max_abs_prob_diff=float(drift),
        metric=head.metric,
    )
    labelled = sum(r.gold is not None for r in torch_records)
    if labelled:
        result.n_labelled = labelled
        result.metric_torch = head.score_records(torch_records)
        result.metric_onnx = head.score_records(onnx_records)
    return result


def chosen_scheme(tried: list[tuple[str, Agreement | None, float]], min_agreement: float):
    """The first scheme tried that agrees with torch at least ``min_agreement`` of the time, else the
    one closest to torch; an unchecked single scheme is kept as it is."""
    if len(tried) == 1:
        return tried[0]
    for entry in tried:
        if entry[1].label_agreement >= min_agreement:
            return entry
    return max(tried, key=lambda entry: entry[1].label_agreement)


def export_onnx(
    model_dir: str | Path,
    dev_examples: list[Example] | None = None,
    *,
    dev_source: str = "dev examples",
    quantization: str = "auto",
    min_agreement: float = MIN_AGREEMENT,
    progress=None,
    trust_pickle: bool = False,
) -> ExportReport:
    """Export, quantise, check against torch on ``dev_examples`` and record the result in the model info.

    The files are written to a temporary folder first and moved into ``<model_dir>/onnx/`` only when
    both exist, so a failed export never leaves a half-written model that load() would pick up."""
    from socialens.classifiers.encoder import EncoderClassifier
    from socialens.classifiers.encoder_heads import ClassificationHead

    if quantization not in QUANTIZATIONS:
        raise ConfigError(f"quantization: got {quantization!r}; expected one of {', '.join(QUANTIZATIONS)}")
    if not 0.0 <= min_agreement <= 1.0:
        raise ConfigError(f"min_agreement: got {min_agreement}; expected a fraction between 0 and 1")
    model_dir = Path(model_dir)
    check_model_dir(model_dir)
    torch_clf = EncoderClassifier.load(
        model_dir, progress=progress, engine="torch", trust=Trust.of(trust_pickle=trust_pickle)
    )
    torch_records = torch_clf.predict(dev_examples) if dev_examples else None
    target = model_dir / ONNX_DIR
    if quantization == "auto":
        schemes = ["dynamic", "blockwise"] if dev_examples else ["blockwise"]
    else:
        schemes = [quantization]
    tried: list[tuple[str, Agreement | None, float]] = []
    with tempfile.TemporaryDirectory(dir=model_dir, prefix=".onnx-") as tmp:
        fp32 = Path(tmp) / FP32_FILE
        start = time.perf_counter()
        _trace_to_onnx(torch_clf, fp32)
        export_s = time.perf_counter() - start
        for scheme in schemes:
            int8 = Path(tmp) / scheme / INT8_FILE
            int8.parent.mkdir()
            start = time.perf_counter()
            _quantize(fp32, int8, scheme)
            quantize_s = time.perf_counter() - start
            checked = None
            if torch_records is not None:
                onnx_clf = copy.copy(torch_clf)  # the same tokenizer and batching, another forward pass
                onnx_clf.onnx_ = OnnxEncoderSession(int8, num_threads=torch_clf.params.num_threads)
                onnx_records = onnx_clf.predict(dev_examples)
                if isinstance(torch_clf.head, ClassificationHead):
                    checked = agreement(torch_records, onnx_records, torch_clf.schema.names, dev_source)
                else:
                    checked = task_agreement(torch_records, onnx_records, torch_clf.head, dev_source)
            tried.append((scheme, checked, quantize_s))
            if checked is not None and checked.label_agreement >= min_agreement:
                break
        scheme, checked, quantize_s = chosen_scheme(tried, min_agreement)
        target.mkdir(exist_ok=True)
        shutil.move(fp32, target / FP32_FILE)
        shutil.move(Path(tmp) / scheme / INT8_FILE, target / INT8_FILE)
    report = ExportReport(
        model_dir=str(model_dir),
        fp32_path=str(target / FP32_FILE),
        int8_path=str(target / INT8_FILE),
        fp32_bytes=(target / FP32_FILE).stat().st_size,
        int8_bytes=(target / INT8_FILE).stat().st_size,
        export_s=round(export_s, 3),
        quantize_s=round(quantize_s, 3),
        quantization=scheme,
        agreement=checked,
    )
    if len(tried) > 1:
        report.tried = [
            {
                "quantization": name,
                "label_agreement": a.label_agreement,
                "max_abs_prob_diff": a.max_abs_prob_diff,
            }
            for name, a, _ in tried
        ]
    if not dev_examples:
        report.notes.append(
            "agreement with torch was not checked: no dev examples (pass --dev FILE, or train with "
            "`socialens train`, which records the split)"
            + ("; took blockwise int8, which needs no check to be trusted" if quantization == "auto" else "")
        )
    # paths relative to the model directory, so the record stays true when the folder moves
    summary = {k: v for k, v in report.to_dict().items() if k != "model_dir"}
    summary.update(fp32_path=f"{ONNX_DIR}/{FP32_FILE}", int8_path=f"{ONNX_DIR}/{INT8_FILE}")
    update_model_info(model_dir, onnx=summary)
    return report


__all__ = [
    "Agreement",
    "ExportReport",
    "TaskAgreement",
    "agreement",
    "check_model_dir",
    "chosen_scheme",
    "export_onnx",
    "task_agreement",
]
