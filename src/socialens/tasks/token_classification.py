"""Named entities (token classification): IOB2 tags over a sentence's tokens.

An example holds its tokens in ``Example.tokens`` and one IOB2 tag per token in ``Example.label``;
``text`` is the tokens joined by single spaces. A raw text without tokens (``predict`` / ``serve``)
is cut with ``tags.tokenize``, keeping character offsets into the text. The schema's labels are
the entity types; their descriptions and aliases go into the prompt and the answer reading.

A prompted LLM lists the entities (``entity_answers``: the Serial and JSON formats of the
published comparison); the listed texts are aligned back to token spans, and what cannot be
placed is counted in the record's ``details``, never silently dropped. Metrics are
``entity_metrics.compute_entity_metrics`` (seqeval, strict IOB2)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from socialens.core.types import Example, LabelSchema, PredictionRecord, Status
from socialens.tasks.base import Generation, Messages, Parsed, ReportTable
from socialens.tasks.entity_answers import (
    align_entities,
    answer_schema,
    format_answer,
    read_answer,
)
from socialens.tasks.entity_metrics import (
    SCALAR_METRICS,
    compute_entity_metrics,
    is_tag_list,
    sentence_counts,
)
from socialens.tasks.label_parsing import is_refusal
from socialens.tasks.tags import entities, entity_types, spans, tags_from_spans, tokenize

WORST_SENTENCES = 10  # rows of the report's worst-sentences table
MAX_TOKENS = {"serial": 128, "json": 256}  # a sentence's entities, with room for JSON's punctuation


def sentence_tokens(example: Example) -> list[str]:
    """The tokens of ``example``: its own, or ``tags.tokenize`` of its text when it has none."""
    if example.tokens is not None:
        return list(example.tokens)
    return [token for token, _, _ in tokenize(example.text)]


def entity_details(text: str, tokens: Sequence[str], tags: Sequence[str], **counts: Any) -> dict[str, Any]:
    """A token-classification record's ``details``: the sentence's ``tokens``, its ``entities``
    (``tags.entities``: text, type, character and token offsets) and ``hallucinated`` (0 unless
    given) with any other counts. Every family that tags tokens writes this shape."""
    return {
        "tokens": list(tokens),
        "entities": entities(text, tokens, tags),
        "hallucinated": 0,
        **counts,
    }


def _listed(items) -> list[dict[str, str]]:
    return [{"text": item.text, "type": item.type} for item in items]


class TokenClassificationTask:
    name = "token_classification"
    headline_metric = "micro_f1"
    scalar_metrics = SCALAR_METRICS
    output_formats = ("serial", "json")
    label_prompts = False
    target_form = "tags"
    stop_rules = ("eos",)

    def stratify_key(self, example: Example) -> str | None:
        if example.label is None:
            return None
        return "+".join(entity_types(example.label)) or "O"

    # ------------------------------------------------------------------ prompts

    def instructions(self, schema: LabelSchema, output_format: str, description: str = "") -> str:
        """The user message's instructions: the entity types and the answer format."""
        lines = [
            f"Find the named entities in the sentence{f' ({description})' if description else ''}.",
            "Entity types:",
        ]
        for label in schema.labels:
            line = f"- {label.name}"
            if label.description:
                line += f": {label.description}"
            if label.aliases:
                line += f" (also called: {', '.join(label.aliases)})"
            lines.append(line)
        types = ", ".join(schema.names)
        if output_format == "json":
            lines.append(
                'Answer with a JSON list of objects {"text": ..., "type": ...}, one per entity, in the '
                f"order they appear, each text copied exactly from the sentence and each type one of "
                f"{types}. Answer [] if the sentence has no entity."
            )
        else:
            lines.append(
                "List each entity on its own line as `entity text -> TYPE`, in the order they appear, "
                f"the text copied exactly from the sentence and TYPE one of {types}. "
                "Answer none if the sentence has no entity."
            )
        return "\n".join(lines)

    def messages(
        self,
        example: Example,
        shots: Sequence[Example],
        schema: LabelSchema,
        *,
        output_format: str,
        description: str = "",
        system_prompt: str | None = None,
    ) -> Messages:
        ask = self.instructions(schema, output_format, description)
        messages: Messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
        for shot in shots:
            messages.append({"role": "user", "content": f"{ask}\n\nSentence: {shot.text}"})
            messages.append({"role": "assistant", "content": self.answer_text(shot, schema, output_format)})
        messages.append({"role": "user", "content": f"{ask}\n\nSentence: {example.text}"})
        return messages

    def answer_text(self, example: Example, schema: LabelSchema, output_format: str) -> str:
        tags = example.label or []
        found = entities(example.text, sentence_tokens(example), tags)
        return format_answer([(e["text"], e["type"]) for e in found], output_format)

    def generation(self, schema: LabelSchema, output_format: str) -> Generation:
        if output_format == "json":
            return Generation(
                max_tokens=MAX_TOKENS["json"], stop=("\nSentence:",), json_schema=answer_schema(schema.names)
            )
        return Generation(max_tokens=MAX_TOKENS["serial"], stop=("\nSentence:", "\n\n\n"))

    # ------------------------------------------------------------------ answers

    def parse(self, raw: str, example: Example, schema: LabelSchema, output_format: str) -> Parsed:
        answer = read_answer(raw, output_format, schema)
        if not answer.readable:  # a refusal is told apart only where no answer can be read
            if is_refusal(str(raw or "")):
                return Parsed(Status.REFUSED, error="refused: the model refused to answer")
            return Parsed(Status.INVALID, error=f"invalid: {answer.reason}")
        tokens = sentence_tokens(example)
        aligned = align_entities(tokens, answer.entities, schema)
        if answer.entities and len(aligned.invalid_type) == len(answer.entities):
            written = sorted({item.type for item in aligned.invalid_type})
            return Parsed(
                Status.INVALID,
                error=f"invalid: no listed entity has one of the types {', '.join(schema.names)} "
                f"(the answer uses {', '.join(written)})",
            )
        predicted = tags_from_spans(len(tokens), aligned.spans)
        details = entity_details(
            example.text,
            tokens,
            predicted,
            hallucinated=len(aligned.hallucinated),
            hallucinated_entities=_listed(aligned.hallucinated),
            invalid_type=len(aligned.invalid_type),
            invalid_type_entities=_listed(aligned.invalid_type),
            overlapping=len(aligned.overlapping),
            overlapping_entities=_listed(aligned.overlapping),
            listed=len(answer.entities),
            aligned_by=aligned.stages,
            answer_form=answer.form,
        )
        if answer.truncated:
            details["truncated"] = True
        return Parsed(Status.OK, predicted=predicted, details=details)

    # ------------------------------------------------------------------ metrics and reports

    def metrics(
        self,
        records: Sequence[PredictionRecord],
        labels: Sequence[str],
        *,
        n_bootstrap: int = 1000,
        seed: int = 0,
        ci: float = 0.95,
        slice_keys: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        return compute_entity_metrics(
            records, labels, n_bootstrap=n_bootstrap, seed=seed, ci=ci, slice_keys=slice_keys
        )

    def report_tables(
        self, metrics: dict[str, Any], records: Sequence[PredictionRecord]
    ) -> list[ReportTable]:
        per_type = ReportTable(
            "Entity types",
            ["type", "precision", "recall", "f1", "support", "predicted"],
            [
                [kind, row["precision"], row["recall"], row["f1"], row["support"], row.get("predicted")]
                for kind, row in metrics.get("per_class", {}).items()
            ],
        )
        return [per_type, self.worst_sentences(records, metrics.get("labels", []))]

    def worst_sentences(
        self, records: Sequence[PredictionRecord], labels: Sequence[str], limit: int = WORST_SENTENCES
    ) -> ReportTable:
        """The sentences with the most entity errors (missed gold + wrong predicted entities,
        hallucinated ones included), ties in record order."""
        scored = [r for r in records if r.gold is not None]
        counts = sentence_counts(scored, labels)
        errors = (counts.gold + counts.pred - 2 * counts.tp).sum(axis=1) + counts.hallucinated
        order = sorted(range(len(scored)), key=lambda i: (-int(errors[i]), i))
        table = ReportTable(
            "Worst sentences", ["id", "errors", "status", "text", "gold entities", "predicted entities"]
        )
        for i in order[:limit]:
            if errors[i] == 0:
                break
            record = scored[i]
            tokens = (record.details or {}).get("tokens")
            texts = {  # entity texts a record keeps without its tokens (encoder records)
                (e.get("token_start"), e.get("token_end")): e.get("text")
                for e in (record.details or {}).get("entities") or []
                if isinstance(e, dict)
            }
            predicted = _describe(counts.pred_entities[i], tokens, texts)
            hallucinated = (record.details or {}).get("hallucinated_entities") or []
            if hallucinated and counts.status[i] == Status.OK.value:
                predicted += "; hallucinated: " + ", ".join(
                    f"{h['text']} ({h['type']})" for h in hallucinated
                )
            table.rows.append(
                [
                    record.id,
                    int(errors[i]),
                    counts.status[i],
                    " ".join(tokens) if tokens else "",
                    _describe(counts.gold_entities[i], tokens),
                    predicted,
                ]
            )
        return table

    def response(self, record: PredictionRecord) -> dict[str, Any]:
        if Status(record.status) is not Status.OK or not is_tag_list(record.predicted):
            return {"entities": None, "tags": None}
        details = record.details or {}
        found = details.get("entities")
        if found is None:
            tokens = details.get("tokens")
            if tokens is not None and len(tokens) == len(record.predicted):
                found = entities(" ".join(tokens), tokens, record.predicted)
            else:  # no tokens to place them: token offsets only
                found = [
                    {
                        "text": None,
                        "type": s.type,
                        "start": None,
                        "end": None,
                        "token_start": s.start,
                        "token_end": s.end,
                    }
                    for s in spans(record.predicted)
                ]
        return {
            "entities": [{key: e.get(key) for key in ("text", "type", "start", "end")} for e in found],
            "tags": list(record.predicted),
        }


def _describe(
    found: Sequence[tuple[str, int, int]], tokens: Sequence[str] | None, texts: dict | None = None
) -> str:
    """Entities as "John Smith (PER), Paris (LOC)": their tokens, else the texts a record stored
    for them, else their token offsets."""
    if not found:
        return "none"
    texts = texts or {}

    def text(start: int, end: int) -> str:
        if tokens:
            return " ".join(tokens[start:end])
        return texts.get((start, end)) or f"[{start}:{end}]"

    return ", ".join(f"{text(start, end)} ({kind})" for kind, start, end in found)
