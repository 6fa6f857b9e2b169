"""Summarisation: one news article in, a one-sentence summary out (XL-Sum, as in LlamaLens).

``Example.text`` is the article, ``Example.label`` the reference summary (a string); so are
``PredictionRecord.gold`` and ``predicted``. Nothing is stratified (``stratify_key`` is None).

Prompt (``messages``): an optional system message, then for each few-shot example a user turn
asking for a one-sentence summary of its article, in the article's language (named from
``metadata["language"]`` when present: ``en``/``English`` -> "in English"; else "in the same
language as the article"), answered by its reference summary; then the same ask for the example.
Output formats: ``serial`` (the summary as plain text) and ``json`` (``{"summary": "..."}``,
constrained by a JSON schema where the backend can).

Stop rule (``SummarisationTask(stop_rule=...)``): ``eos`` keeps everything the model wrote up to
its end of sequence (or the token budget, ``max_tokens``, 96 by default); ``first_sentence`` keeps
its first sentence only (:func:`first_sentence`), which is what LlamaLens did (generation stopped at
the first full stop or EOS). The cut is made in ``parse``, so the record's raw output keeps what was
generated and the rule can be compared on the same generations. (A stop string "." at generation
time would cut "U.S." and "3.5".)

Parsing: ``<think>`` blocks and a leading "Summary:" label are removed; a refusal
(``label_parsing.is_refusal``) is ``refused`` unless the article itself reads as one to that test
(news quotes apologies and policy violations: "اعتذر", "ينتهك", "content policy"), so a summary
repeating its article is not counted as a refusal; an empty answer (or, in ``json``, one with no
``summary`` string) is ``invalid``. ``details`` records the article's word count (of the example
``parse`` is given), the stop rule and, with ``first_sentence``, whether it cut anything.

How a caller applies the stop rule: ``TASKS.get("summarisation")(stop_rule="first_sentence")``
(or ``task.stop_rule = "first_sentence"`` on an instance; ``stop_rules`` lists the values), then
``task.parse(raw, example, schema, output_format)`` on the model's whole raw answer: the cut comes
after ``<think>`` blocks, the JSON envelope and a "Summary:" label are removed, so a ``json``
answer is not cut inside its object.

Metrics (``metrics``, from records): ROUGE-1/2/L F1 means (``rouge1``, ``rouge2``, ``rougeL``;
precision and recall means under ``precision`` / ``recall``) with :mod:`socialens.tasks.rouge`'s
tokenizer (every script kept, no stemming); a record that is not ``ok`` scores 0 on all of them
(counted wrong; its rate is in ``status``); percentile bootstrap CIs over examples (fixed seed);
length statistics in words (``lengths``: predictions and references, mean and median, their
ratio, and the compression ratio article / summary); ``slices`` per metadata key (language).
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np
import regex

from socialens.core.errors import ConfigError
from socialens.core.types import Example, LabelSchema, PredictionRecord, Status
from socialens.tasks.base import Generation, Messages, Parsed, ReportTable, status_counts
from socialens.tasks.classification_metrics import slice_value
from socialens.tasks.label_parsing import is_refusal
from socialens.tasks.rouge import (
    ROUGE_TYPES,
    TOKENIZER_NOTE,
    bootstrap_mean_ci,
    rouge,
    word_count,
)

STOP_RULES = ("eos", "first_sentence")
DEFAULT_MAX_TOKENS = 96
WORST_EXAMPLES = 5
_CELL_CHARS = 200

LANGUAGE_NAMES = {
    "en": "English",
    "ar": "Arabic",
    "hi": "Hindi",
    "fr": "French",
    "es": "Spanish",
    "de": "German",
    "ur": "Urdu",
    "bn": "Bengali",
    "fa": "Persian",
    "tr": "Turkish",
    "ru": "Russian",
    "zh": "Chinese",
}

SUMMARY_JSON_SCHEMA = json.dumps(
    {
        "type": "object",
        "properties": {"summary": {"type": "string"}},
        "required": ["summary"],
        "additionalProperties": False,
    }
)

# ----------------------------------------------------------------------------- the stop rule

# Sentence ends: "." "!" "?", the Arabic question mark "؟" and full stop "۔", the Devanagari danda
# "।" and double danda "॥", the ideographic full stop; a run of them ("?!", "...") is one end, and
# closing quotes or brackets right after it belong to the sentence.
_END = regex.compile(r"[.!?\u061f\u06d4\u0964\u0965\u3002]+[\"'\u201d\u2019\u00bb)\]]*")
_CLOSERS = "\"'\u201d\u2019\u00bb)]"
# The word before a ".": dotted initialisms ("U.S", "e.g"), single letters (initials), titles.
_WORD_BEFORE = regex.compile(r"(?:^|(?<=[\s(\"'\u201c\u2018\u00ab]))([\p{L}\p{M}]+(?:\.[\p{L}\p{M}]+)*)$")
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st mt vs gen sen rep gov lt col capt sgt rev hon inc ltd co corp".split()
)


def _is_abbreviation(before: str) -> bool:
    match = _WORD_BEFORE.search(before)
    if match is None:
        return False
    word = match.group(1)
    return "." in word or len(word) == 1 or word.casefold() in _ABBREVIATIONS


def first_sentence(text: str) -> str:
    """The first sentence of ``text``, stripped: up to and with the first sentence end (". ! ?",
    Arabic "؟" "۔", Devanagari "।" "॥"), closing quotes or brackets after it included. A "." ends a
    sentence only when whitespace or the end of the text follows it and the word before it is not an
    abbreviation ("U.S.", "e.g.", an initial as in "John F. Kennedy", "Dr."), so "3.5", "bbc.co.uk"
    and "The U.S. economy" are not cut. No sentence end: the whole text."""
    text = (text or "").strip()
    for match in _END.finditer(text):
        end = match.end()
        run = match.group(0).rstrip(_CLOSERS)
        if set(run) == {"."}:
            if end < len(text) and not text[end].isspace():
                continue  # "3.5", "bbc.co.uk", "U.S"
            if run == "." and end < len(text) and _is_abbreviation(text[: match.start()]):
                continue  # "U.S. economy", "Dr. Smith"
        return text[:end].strip()
    return text


# ----------------------------------------------------------------------------- parsing helpers

_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_LABEL_PREFIX = re.compile(
    r"^\s*(?:\*\*)?(?:summary|one-sentence summary|الملخص|ملخص|सारांश)(?:\*\*)?\s*[:：]\s*(?:\*\*)?\s*",
    re.IGNORECASE,
)
_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def _json_summary(text: str) -> str | None:
    """The ``summary`` string of the JSON object in ``text`` (fenced or not), else None."""
    match = _JSON_OBJECT.search(text)
    if match is None:
        return None
    try:
        data = json.loads(match.group(0))
    except json.JSONDecodeError:
        return None
    value = data.get("summary") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def language_name(language: Any) -> str | None:
    """A language's English name from a code ("ar") or a name ("arabic"); None when not given."""
    if language is None or not str(language).strip():
        return None
    value = str(language).strip()
    return LANGUAGE_NAMES.get(value.casefold(), value[:1].upper() + value[1:] if len(value) > 3 else None)


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _median(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if len(values) else None


def _cell(text: Any) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _CELL_CHARS else text[: _CELL_CHARS - 1] + "…"


class SummarisationTask:
    name = "summarisation"
    headline_metric = "rouge2"
    scalar_metrics = ROUGE_TYPES
    output_formats = ("serial", "json")
    label_prompts = False
    target_form = "text"
    stop_rules = STOP_RULES

    def __init__(self, stop_rule: str = "eos", max_tokens: int = DEFAULT_MAX_TOKENS):
        if stop_rule not in STOP_RULES:
            raise ConfigError(f"stop_rule '{stop_rule}': expected one of {', '.join(STOP_RULES)}")
        if max_tokens < 1:
            raise ConfigError(f"max_tokens {max_tokens}: expected a positive number of tokens")
        self.stop_rule = stop_rule
        self.max_tokens = max_tokens

    def stratify_key(self, example: Example) -> str | None:
        return None

    # -- prompting --------------------------------------------------------------------------------

    def ask(self, example: Example, *, output_format: str = "serial", description: str = "") -> str:
        """The request for ``example``'s summary, without the article."""
        language = language_name((example.metadata or {}).get("language"))
        where = f"in {language}" if language else "in the same language as the article"
        about = f" ({description})" if description else ""
        ask = f"Summarise the following news article{about} in one sentence, {where}."
        if output_format == "json":
            ask += ' Answer with a JSON object: {"summary": "<the summary>"}.'
        else:
            ask += " Answer with the summary only."
        return ask

    def messages(
        self,
        example: Example,
        shots: Sequence[Example],
        schema: LabelSchema,
        *,
        output_format: str = "serial",
        description: str = "",
        system_prompt: str | None = None,
    ) -> Messages:
        self._check_format(output_format)
        messages: Messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
        for shot in shots:
            if not isinstance(shot.label, str) or not shot.label.strip():
                raise ValueError(f"few-shot example '{shot.id}' has no reference summary")
            messages.append({"role": "user", "content": self._user(shot, output_format, description)})
            messages.append({"role": "assistant", "content": self.answer_text(shot, schema, output_format)})
        messages.append({"role": "user", "content": self._user(example, output_format, description)})
        return messages

    def _user(self, example: Example, output_format: str, description: str) -> str:
        ask = self.ask(example, output_format=output_format, description=description)
        return f"{ask}\n\nArticle: {example.text}"

    def answer_text(self, example: Example, schema: LabelSchema, output_format: str) -> str:
        self._check_format(output_format)
        summary = str(example.label).strip()
        return json.dumps({"summary": summary}, ensure_ascii=False) if output_format == "json" else summary

    def generation(self, schema: LabelSchema, output_format: str) -> Generation:
        self._check_format(output_format)
        return Generation(
            max_tokens=self.max_tokens,
            json_schema=SUMMARY_JSON_SCHEMA if output_format == "json" else None,
        )

    def _check_format(self, output_format: str) -> None:
        if output_format not in self.output_formats:
            raise ConfigError(
                f"output format '{output_format}': the summarisation task takes one of "
                f"{', '.join(self.output_formats)}"
            )

    # -- parsing ----------------------------------------------------------------------------------

    def parse(self, raw: str, example: Example, schema: LabelSchema, output_format: str) -> Parsed:
        text = _THINK.sub("", raw or "").strip()
        details: dict[str, Any] = {"article_words": word_count(example.text), "stop_rule": self.stop_rule}
        if text and is_refusal(text) and not is_refusal(example.text):
            return Parsed(Status.REFUSED, error="refusal", details=details)
        if output_format == "json":
            summary = _json_summary(text)
            if summary is None:
                error = "empty answer" if not text else "no JSON object with a 'summary' string"
                return Parsed(Status.INVALID, error=error, details=details)
            text = summary.strip()
        text = _LABEL_PREFIX.sub("", text, count=1).strip()
        if self.stop_rule == "first_sentence":
            cut = first_sentence(text)
            details["cut"] = cut != text
            text = cut
        if not text:
            return Parsed(Status.INVALID, error="empty answer", details=details)
        return Parsed(Status.OK, predicted=text, details=details)

    # -- metrics ----------------------------------------------------------------------------------

    def metrics(
        self,
        records: Sequence[PredictionRecord],
        labels: Sequence[str] = (),
        *,
        n_bootstrap: int = 1000,
        seed: int = 0,
        ci: float = 0.95,
        slice_keys: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        if not 0 < ci < 1:
            raise ValueError(f"ci must be in (0, 1), got {ci}")
        records = list(records)
        scored = [r for r in records if r.gold is not None]
        result = {
            "labels": list(labels),
            "n_total": len(records),
            "n_unlabelled": len(records) - len(scored),
            **self._block(scored, n_bootstrap=n_bootstrap, seed=seed, ci=ci),
            "tokenizer": TOKENIZER_NOTE,
        }
        if slice_keys:
            n_slice = min(n_bootstrap, 200)
            slices: dict[str, dict[str, Any]] = {}
            for key in slice_keys:
                groups: dict[str, list[PredictionRecord]] = {}
                for record in scored:
                    groups.setdefault(slice_value((record.metadata or {}).get(key)), []).append(record)
                slices[key] = {
                    value: self._block(groups[value], n_bootstrap=n_slice, seed=seed, ci=ci)
                    for value in sorted(groups)
                }
            result["slices"] = slices
        return result

    def example_scores(self, record: PredictionRecord) -> dict[str, dict[str, float]]:
        """ROUGE of one record: its prediction against its reference; all 0 unless it is ok."""
        predicted = record.predicted if Status(record.status) is Status.OK else None
        if not isinstance(predicted, str) or not predicted.strip():
            return {name: {"precision": 0.0, "recall": 0.0, "f1": 0.0} for name in ROUGE_TYPES}
        return rouge(predicted, str(record.gold))

    def _block(
        self, records: list[PredictionRecord], *, n_bootstrap: int, seed: int, ci: float
    ) -> dict[str, Any]:
        n = len(records)
        kinds = ("precision", "recall", "f1")
        table = np.zeros((n, len(ROUGE_TYPES), len(kinds)))
        for i, record in enumerate(records):
            scores = self.example_scores(record)
            table[i] = [[scores[name][kind] for kind in kinds] for name in ROUGE_TYPES]
        block: dict[str, Any] = {"n": n}
        means = table.mean(axis=0) if n else None
        for j, name in enumerate(ROUGE_TYPES):
            block[name] = float(means[j, 2]) if n else None
        for k, kind in enumerate(kinds[:2]):
            block[kind] = {name: (float(means[j, k]) if n else None) for j, name in enumerate(ROUGE_TYPES)}
        block["status"] = status_counts(r.status for r in records)
        intervals = bootstrap_mean_ci(table[:, :, 2], n_bootstrap=n_bootstrap, seed=seed, ci=ci)
        block["ci"] = {
            "level": ci,
            "method": "percentile",
            "n_bootstrap": n_bootstrap,
            "seed": seed,
            **{name: (intervals[j] if intervals else None) for j, name in enumerate(ROUGE_TYPES)},
        }
        block["lengths"] = self._lengths(records)
        return block

    def _lengths(self, records: list[PredictionRecord]) -> dict[str, Any]:
        ok = [r for r in records if Status(r.status) is Status.OK and isinstance(r.predicted, str)]
        predicted = [word_count(r.predicted) for r in ok]
        reference = [word_count(str(r.gold)) for r in records]
        ratio = [word_count(r.predicted) / word_count(str(r.gold)) for r in ok if word_count(str(r.gold))]

        def compression(rows: list[tuple[PredictionRecord, int]]) -> float | None:
            values = [
                r.details["article_words"] / words
                for r, words in rows
                if words and isinstance(r.details, dict) and r.details.get("article_words")
            ]
            return _mean(values)

        return {
            "prediction_words": {"mean": _mean(predicted), "median": _median(predicted), "n": len(predicted)},
            "reference_words": {"mean": _mean(reference), "median": _median(reference), "n": len(reference)},
            # prediction words / reference words, averaged over ok records
            "length_ratio": _mean(ratio),
            # article words / summary words, averaged over records whose details give the article's
            "compression_ratio": {
                "prediction": compression(list(zip(ok, predicted, strict=True))),
                "reference": compression(list(zip(records, reference, strict=True))),
            },
        }

    # -- report and serving -----------------------------------------------------------------------

    def report_tables(
        self, metrics: dict[str, Any], records: Sequence[PredictionRecord]
    ) -> list[ReportTable]:
        tables = []
        lengths = metrics.get("lengths") or {}
        if lengths:
            compression = lengths.get("compression_ratio") or {}
            rows = []
            for name, key in (("prediction", "prediction_words"), ("reference", "reference_words")):
                stats = lengths.get(key) or {}
                rows.append([name, stats.get("mean"), stats.get("median"), compression.get(name)])
            tables.append(
                ReportTable(
                    title="Summary lengths (words)",
                    headers=["summaries", "mean words", "median words", "compression (article / summary)"],
                    rows=rows,
                )
            )
        for key, values in (metrics.get("slices") or {}).items():
            tables.append(
                ReportTable(
                    title=f"ROUGE by {key}",
                    headers=[key, "n", "ROUGE-1", "ROUGE-2", "ROUGE-L", "ROUGE-2 CI", "ok rate"],
                    rows=[
                        [
                            value,
                            block["n"],
                            block["rouge1"],
                            block["rouge2"],
                            block["rougeL"],
                            block["ci"].get("rouge2"),
                            block["status"]["rates"]["ok"],
                        ]
                        for value, block in values.items()
                    ],
                )
            )
        scored = [r for r in records if r.gold is not None]
        if scored:
            ranked = sorted(
                ((self.example_scores(r)["rouge2"]["f1"], r) for r in scored),
                key=lambda item: (item[0], item[1].id),
            )
            rows = []
            for score, record in ranked[:WORST_EXAMPLES]:
                status = Status(record.status)
                prediction = record.predicted if status is Status.OK else f"({status.value})"
                rows.append([record.id, score, _cell(record.gold), _cell(prediction)])
            tables.append(
                ReportTable(
                    title=f"Worst summaries (lowest ROUGE-2, {len(rows)} of {len(scored)})",
                    headers=["id", "ROUGE-2", "reference", "prediction"],
                    rows=rows,
                )
            )
        return tables

    def response(self, record: PredictionRecord) -> dict[str, Any]:
        return {"summary": record.predicted}
