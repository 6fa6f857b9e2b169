"""Family ``instruct``: an instruct LLM tuned with LoRA on the experiment's dataset (the LlamaLens
recipe), then evaluated through the prompted-LLM machinery.

``fit`` turns each training example into a chat record (``llm.prompts.chat_messages``)
with an instruction drawn at random from the dataset's set (``instructions``: a list, or a
.txt/.json/.yaml file; by default one instruction built from the label schema, naming every
label), trains a LoRA adapter (``tuning.lora.train_lora``), and hands prediction to a
``PromptedClassifier`` on the hf backend with the adapter on top, prompted with the FIRST
instruction (``prompt: instruction``). An untuned baseline is the same prompted classifier
without the adapter::

    - {id: smollm2-untuned, family: prompted, backend: hf, prompt: instruction}
    - {id: smollm2-lora, family: instruct, lora: {epochs: 2, max_length: 256}}

so both read the same prompt and are decoded, parsed and refusal-counted the same way. A base
model without a chat template (``builtin:gemma3-270m``) works the same: the hf backend asks it in
the plain rendering (``llm.base.render_plain``) and ``tuning.lora`` trains it on exactly that.

A task whose answer is not one label (``task_type="summarisation"``: ``Task.label_prompts`` is
False) is trained through the same LoRA path on records whose prompt is the task's own
(``task.messages``, with no shots, the text cut to ``max_text_chars``, the system message
``system_prompt`` or none) and whose answer is ``task.answer_text`` (the reference summary); the
tuned model is then evaluated by the prompted family's task path with the same prompt, in the
``serial`` format, decoded with the task's token budget (``max_tokens`` only when given) and
``stop_rule`` (``eos`` | ``first_sentence``, as LlamaLens stopped summaries)::

    - {id: smollm2-lora-xlsum, family: instruct, stop_rule: first_sentence, lora: {epochs: 2}}

``model`` is the base LLM, or a folder already trained (by ``socialens instruct train`` or saved
by this family): then ``fit`` only records the schema and prediction uses that adapter.
"""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from socialens.classifiers.base import (
    Trust,
    check_referenced_weights,
    check_task_type,
    infer_schema,
    read_model_info,
    weights_are_safetensors,
    write_model_info,
)
from socialens.core.errors import ConfigError
from socialens.core.params import FamilyParams
from socialens.core.progress import EstimateHook, ProgressHook
from socialens.core.registry import TASKS
from socialens.core.types import Example, LabelSchema, PredictionRecord
from socialens.tuning.lora import LoraParams

ADAPTER_DIR = "adapter"


class InstructParams(FamilyParams):
    model: str = "builtin:smollm2-135m-instruct"
    instructions: str | list[str] | None = None
    system_prompt: str | None = None  # None: the tuning default (llm.prompts.DEFAULT_SYSTEM)
    lora: LoraParams = Field(default_factory=LoraParams)
    decoding: Literal["generate", "constrained", "scored"] = "generate"
    max_tokens: int = Field(
        20, gt=0, description="answer token budget (a task that generates: its own unless given)"
    )
    stop_rule: Literal["eos", "first_sentence"] = Field(
        "eos", description="summaries: the whole answer (eos) or its first sentence (as LlamaLens)"
    )
    max_text_chars: int | None = Field(1000, gt=0)
    parse_threshold: float = Field(0.8, ge=0, le=1)
    eval_batch_size: int = Field(8, ge=1)
    threads: int | None = Field(None, ge=1)
    # Off by default: a retrained adapter can reuse a folder path, and a cached answer would be stale.
    cache: bool = False


def load_instructions(value: str | list[str] | None) -> list[str] | None:
    """Instructions from a list, or from a .txt (one per line), .json or .yaml file (a list, or a
    mapping with an ``instructions`` list)."""
    if value is None:
        return None
    if isinstance(value, list):
        found = [s.strip() for s in value if isinstance(s, str) and s.strip()]
        if not found:
            raise ConfigError("instructions: expected a non-empty list of strings")
        return found
    path = Path(value).expanduser()
    if not path.is_file():
        raise ConfigError(f"{path}: instructions file not found (expected .txt, .json or .yaml)")
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".json", ".yaml", ".yml"):
        from socialens.core.yaml_io import read_yaml

        data = json.loads(text) if path.suffix == ".json" else read_yaml(path)
        if isinstance(data, dict):
            data = data.get("instructions")
        if not isinstance(data, list) or not all(isinstance(s, str) for s in data) or not data:
            raise ConfigError(f"{path}: expected a list of instruction strings (or {{instructions: [...]}})")
        return [s.strip() for s in data if s.strip()]
    found = [line.strip() for line in text.splitlines() if line.strip()]
    if not found:
        raise ConfigError(f"{path}: no instructions (expected one per line)")
    return found


def trained_folder(model: str) -> Path | None:
    """The folder holding a trained adapter when ``model`` is one (else None: a base model)."""
    path = Path(model).expanduser()
    if (path / ADAPTER_DIR / "adapter_config.json").is_file():
        return path
    return None


def _trained_base(folder: Path) -> str:
    for name, key in (("lora_params.json", "base"), ("socialens_model.json", "base")):
        info_path = folder / name
        if info_path.is_file():
            base = json.loads(info_path.read_text(encoding="utf-8")).get(key)
            if base:
                return base
    raise ConfigError(f"{folder}: trained folder names no base model (expected lora_params.json)")


def chat_records(
    examples: list[Example], instructions: list[str], seed: int, system: str | None, max_chars: int | None
) -> list[dict[str, Any]]:
    """One training record per labelled example, each with an instruction drawn at random."""
    from socialens.llm.prompts import DEFAULT_SYSTEM, chat_messages

    rng = random.Random(seed)
    records = []
    for ex in examples:
        if ex.label is None:
            continue
        index = rng.randrange(len(instructions))
        text = ex.text if max_chars is None else ex.text[:max_chars]
        records.append(
            {
                "id": ex.id,
                "label": ex.label,
                "instruction_index": index,
                "messages": chat_messages(
                    instructions[index], text, ex.label, system=DEFAULT_SYSTEM if system is None else system
                ),
            }
        )
    return records


def task_records(
    examples: list[Example],
    task_type: str,
    schema: LabelSchema,
    *,
    description: str = "",
    system: str | None = None,
    max_chars: int | None = None,
    output_format: str = "serial",
) -> list[dict[str, Any]]:
    """One training record per example with a target, for a task that builds its own prompt
    (``Task.label_prompts`` False, e.g. summarisation): the prompt exactly as the prompted family
    asks it (``task.messages``, no shots, the text cut to ``max_chars``), the answer
    ``task.answer_text`` (for a summary: the reference)."""
    from socialens.llm.prompts import join_record

    task = TASKS.get(task_type)()
    records = []
    for ex in examples:
        if ex.label is None:
            continue
        clipped = (
            ex
            if max_chars is None or len(ex.text) <= max_chars
            else dataclasses.replace(ex, text=ex.text[:max_chars])
        )
        prompt = task.messages(
            clipped, [], schema, output_format=output_format, description=description, system_prompt=system
        )
        answer = task.answer_text(ex, schema, output_format)
        records.append({"id": ex.id, "label": ex.label, "messages": join_record(prompt, answer)})
    return records


class InstructClassifier:
    family = "instruct"
    task_types = ("classification", "summarisation")
    Params = InstructParams
    runtime = "torch"  # the hf backend with the adapter on top

    def __init__(
        self,
        params: InstructParams | None = None,
        seed: int = 0,
        *,
        progress: ProgressHook | None = None,
        estimate: EstimateHook | None = None,
    ):
        self.params = params or InstructParams()
        self.seed = seed
        self.progress = progress
        self.estimate = estimate  # handed to the prompted evaluator: estimate(RunEstimate)
        self.stopped_: str | None = None
        self.task_type = "classification"
        self.schema: LabelSchema | None = None
        self.task = ""
        self.instructions: list[str] = []
        self.base = self.params.model
        self.adapter_dir: Path | None = None
        self.training_: dict[str, Any] = {}
        self._workdir: tempfile.TemporaryDirectory | None = None
        self._evaluator = None

    def fit(
        self,
        train: list[Example],
        dev: list[Example] | None = None,
        *,
        schema: LabelSchema | None = None,
        task: str = "",
        task_type: str = "classification",
    ) -> InstructClassifier:
        self.task_type = check_task_type(self, task_type)
        from socialens.llm.prompts import default_instruction
        from socialens.tuning.lora import train_lora

        label_prompts = TASKS.get(self.task_type).label_prompts
        if label_prompts:
            self.schema = schema or infer_schema(train)
            self.instructions = load_instructions(self.params.instructions) or [
                default_instruction(self.schema, task or None)
            ]
        else:  # the task's own prompt: no label schema to name, no instruction set
            self.schema = schema or LabelSchema.from_names([self.task_type])
            self.instructions = []
        self.task = task
        self._evaluator = None
        trained = trained_folder(self.params.model)
        if trained is not None:
            self.base, self.adapter_dir = _trained_base(trained), trained / ADAPTER_DIR
            return self
        if label_prompts:
            unknown = sorted({ex.label for ex in train if ex.label is not None} - set(self.schema.names))
            if unknown:
                raise ValueError(f"training labels {unknown} are not in the schema {self.schema.names}")
            records = chat_records(
                train, self.instructions, self.seed, self.params.system_prompt, self.params.max_text_chars
            )
        else:
            records = task_records(
                train,
                self.task_type,
                self.schema,
                description=task,
                system=self.params.system_prompt,
                max_chars=self.params.max_text_chars,
            )
            if not records:
                raise ValueError(
                    f"cannot fit: no training example has a target for task type '{self.task_type}'"
                )
        self._workdir = tempfile.TemporaryDirectory(prefix="socialens-instruct-")
        lora = self.params.lora.model_copy(update={"seed": self.seed})
        report = train_lora(records, self.params.model, self._workdir.name, lora, progress=self.progress)
        self.base = self.params.model
        self.adapter_dir = Path(report.adapter_dir)
        self.training_ = report.to_dict()
        return self

    def _check_fitted(self) -> None:
        if self.schema is None or self.adapter_dir is None:
            raise RuntimeError("InstructClassifier is not fitted: call fit() or load() first")

    @property
    def evaluator(self):
        """The prompted classifier that asks the tuned model, exactly as an untuned one is asked."""
        from socialens.classifiers.prompted import PromptedClassifier, PromptedParams

        self._check_fitted()
        if self._evaluator is None:
            p = self.params
            if TASKS.get(self.task_type).label_prompts:
                prompt = {
                    "prompt": "instruction",
                    "instruction": self.instructions[0],
                    "max_tokens": p.max_tokens,
                }
            else:  # the task's own prompt, its token budget unless one was given, and the stop rule
                prompt = {"prompt": "serial", "stop_rule": p.stop_rule}
                if "max_tokens" in p.model_fields_set:
                    prompt["max_tokens"] = p.max_tokens
            params = PromptedParams(
                backend="hf",
                model=self.base,
                **prompt,
                system_prompt=p.system_prompt,
                decoding=p.decoding,
                max_text_chars=p.max_text_chars,
                parse_threshold=p.parse_threshold,
                adapter=str(self.adapter_dir),
                batch_size=p.eval_batch_size,
                cache=p.cache,
                backend_options={"threads": p.threads} if p.threads else {},
            )
            self._evaluator = PromptedClassifier(params, seed=self.seed, progress=self.progress)
            self._evaluator.fit([], schema=self.schema, task=self.task, task_type=self.task_type)
        return self._evaluator

    def predict(self, examples: list[Example]) -> list[PredictionRecord]:
        evaluator = self.evaluator
        evaluator.progress, evaluator.estimate = self.progress, self.estimate
        records = evaluator.predict(examples)
        self.stopped_ = evaluator.stopped_
        return records

    def save(self, directory: str | Path) -> None:
        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / ADAPTER_DIR
        if target.resolve() != self.adapter_dir.resolve():
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(self.adapter_dir, target)
        extra = {
            "seed": self.seed,
            "task": self.task,
            "base": self.base,
            "instructions": self.instructions,
            "training": self.training_,
        }
        if self.task_type != "classification":
            extra["task_type"] = self.task_type
        write_model_info(directory, self.family, self.schema, self.params, extra=extra)

    @classmethod
    def load(
        cls, directory: str | Path, *, trust: Trust | None = None, progress: ProgressHook | None = None
    ) -> InstructClassifier:
        """Load a saved model; its adapter loads from safetensors only, unless ``trust.pickle``
        allows a pickled ``adapter_model.bin``."""
        directory = Path(directory)
        info = read_model_info(directory)
        try:
            params = InstructParams.model_validate(info["params"])
        except Exception as exc:
            raise ConfigError(f"{directory}: bad instruct-model parameters ({exc})") from None
        if not (directory / ADAPTER_DIR / "adapter_config.json").is_file():
            raise ConfigError(f"{directory}: missing {ADAPTER_DIR}/adapter_config.json (the LoRA adapter)")
        weights_are_safetensors(directory / ADAPTER_DIR, trust)
        obj = cls(params, seed=info.get("seed", 0), progress=progress)
        obj.schema = LabelSchema.from_dict(info["schema"])
        obj.task = info.get("task", "")
        obj.task_type = check_task_type(obj, info.get("task_type", "classification"))
        obj.instructions = list(info.get("instructions") or [])
        if not obj.instructions and TASKS.get(obj.task_type).label_prompts:
            raise ConfigError(f"{directory}: socialens_model.json has no instructions")
        obj.base = info.get("base") or params.model
        check_referenced_weights(obj.base, trust)
        obj.adapter_dir = directory / ADAPTER_DIR
        obj.training_ = info.get("training", {})
        return obj


def write_trained_model_info(
    out_dir: str | Path, records: list[dict[str, Any]], base: str, params: LoraParams
) -> bool:
    """Make a folder from ``socialens instruct train`` loadable as an ``instruct`` model (predict,
    serve) when its records come from one dataset: labels from the records, the instruction
    from an ``instruction_index`` 0 record. Returns whether it did."""
    datasets = {r.get("dataset") for r in records}
    labels = sorted({r.get("label") for r in records if isinstance(r.get("label"), str)})
    if len(datasets) != 1 or not labels:
        return False
    from socialens.llm.prompts import record_instruction

    first = next((r for r in records if r.get("instruction_index", 0) == 0), records[0])
    instruction = record_instruction(first["messages"])
    system = next((m["content"] for m in first["messages"] if m.get("role") == "system"), "")
    out_dir = Path(out_dir)
    report_path = out_dir / "train_report.json"
    training = json.loads(report_path.read_text(encoding="utf-8")) if report_path.is_file() else {}
    write_model_info(
        out_dir,
        "instruct",
        LabelSchema.from_names(labels),
        InstructParams(model=base, system_prompt=system, lora=params),
        extra={
            "seed": params.seed,
            "task": "",
            "base": base,
            "instructions": [instruction],
            "training": training,
        },
    )
    return True


__all__ = [
    "InstructClassifier",
    "InstructParams",
    "chat_records",
    "load_instructions",
    "task_records",
    "write_trained_model_info",
]
