"""The encoder family's token-classification head: IOB2 tags per word (named entities).

- Tag set: ``O`` then ``B-X``, ``I-X`` for each entity type X of the schema, in schema order.
- Words are an example's ``tokens``, or its text cut by ``tasks.tags.tokenize`` when it has none
  (``tasks.token_classification.sentence_tokens``); the tokenizer gets them with
  ``is_split_into_words=True`` (a fast tokenizer is needed for the word ids), and each word's tag
  sits on its FIRST sub-token; the other sub-tokens and the special tokens are -100, which the
  loss ignores. Batches are padded dynamically
  (DataCollatorForTokenClassification).
- Early stopping follows dev entity micro-F1 (seqeval, strict IOB2) of the predicted tags after
  the same IOB2 repair prediction applies.
- Prediction: the tag of each word's first sub-token, repaired to valid IOB2 (an ``I-X`` that does
  not continue an X entity becomes ``B-X``, ``tasks.tags.normalise_tags``). Words past
  ``max_length`` sub-tokens (and words the tokenizer gives no sub-token at all, such as a lone
  zero-width character) get ``O``; the record counts them in ``details`` and a warning says how
  many sentences were cut. ``details`` has the shape every token tagger writes
  (``tasks.token_classification.entity_details``: tokens, entities with character offsets,
  hallucinated 0) plus ``confidence``, the top probability of each word (None for a word tagged O
  for want of a sub-token). Every example yields one record.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from socialens.classifiers.encoder_heads import EncoderHead, logits_of
from socialens.core.errors import ConfigError, DataError
from socialens.core.types import Example, LabelSchema, PredictionRecord, Status
from socialens.tasks.tags import OUTSIDE, entity_types, normalise_tags
from socialens.tasks.token_classification import entity_details, sentence_tokens

log = logging.getLogger(__name__)
IGNORE = -100  # the label transformers' losses skip


def tag_set(entity_type_names: Sequence[str]) -> list[str]:
    """``["O", "B-X", "I-X", ...]`` for the entity types in the given order."""
    return [OUTSIDE, *(f"{prefix}-{kind}" for kind in entity_type_names for prefix in ("B", "I"))]


def align_labels(word_ids: Sequence[int | None], word_labels: Sequence[int]) -> list[int]:
    """One label per sub-token: the word's label on its first sub-token, -100 elsewhere."""
    out = []
    previous = None
    for word in word_ids:
        out.append(IGNORE if word is None or word == previous else word_labels[word])
        previous = word
    return out


def first_subtokens(word_ids: Sequence[int | None]) -> dict[int, int]:
    """Word index -> position of its first sub-token."""
    first: dict[int, int] = {}
    for position, word in enumerate(word_ids):
        if word is not None and word not in first:
            first[word] = position
    return first


def entity_f1(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> float:
    """Entity-level micro-F1 (seqeval, strict IOB2) of tag sequences."""
    from seqeval.metrics import f1_score
    from seqeval.scheme import IOB2

    if not gold:
        return 0.0
    return float(
        f1_score(
            list(map(list, gold)), list(map(list, predicted)), mode="strict", scheme=IOB2, zero_division=0
        )
    )


def repair(tags: Sequence[str]) -> list[str]:
    return normalise_tags(tags, "iob2")[0]


class TokenHead(EncoderHead):
    task_type = "token_classification"
    metric = "entity_f1"
    auto_model = "AutoModelForTokenClassification"
    per_token = True

    @property
    def outputs(self) -> list[str]:
        return tag_set(self.schema.names)

    @staticmethod
    def infer_schema(train):
        tags = [tag for ex in train if isinstance(ex.label, list | tuple) for tag in ex.label]
        names = entity_types([t for t in tags if isinstance(t, str)])
        if not names:
            raise ValueError("cannot fit: no training example has an entity tag")
        return LabelSchema.from_names(names)

    def labelled(self, examples, part):
        known = set(self.outputs)
        found = []
        for ex in examples or []:
            if ex.label is None:
                continue
            words = sentence_tokens(ex)
            if not isinstance(ex.label, list | tuple):
                raise DataError(
                    f"{part} example {ex.id}: label {ex.label!r}; expected a list of IOB2 tags, one per token"
                )
            if len(ex.label) != len(words):
                raise DataError(
                    f"{part} example {ex.id}: {len(ex.label)} tags for {len(words)} tokens; "
                    "expected one IOB2 tag per token"
                )
            unknown = sorted({str(t) for t in ex.label} - known)
            if unknown:
                raise DataError(
                    f"{part} example {ex.id}: tags {unknown} are not in the tag set {self.outputs} "
                    f"(entity types {self.schema.names})"
                )
            found.append(ex)
        return found

    def tokenize_words(self, tokenizer, examples: list[Example], max_length: int):
        if not getattr(tokenizer, "is_fast", False):
            raise ConfigError(
                f"token classification needs a fast tokenizer (word ids); {type(tokenizer).__name__} is not one"
            )
        words = [sentence_tokens(ex) for ex in examples]
        enc = tokenizer(
            words, is_split_into_words=True, truncation=True, max_length=max_length, padding=False
        )
        return words, enc

    def encode(self, tokenizer, examples, max_length, with_labels):
        _, enc = self.tokenize_words(tokenizer, examples, max_length)
        index = {tag: i for i, tag in enumerate(self.outputs)}
        rows = [{key: enc[key][i] for key in enc.keys()} for i in range(len(examples))]
        if with_labels:
            for i, (row, ex) in enumerate(zip(rows, examples, strict=True)):
                row["labels"] = align_labels(enc.word_ids(i), [index[t] for t in ex.label])
        return rows

    def collator(self, tokenizer):
        from transformers import DataCollatorForTokenClassification

        return DataCollatorForTokenClassification(tokenizer, label_pad_token_id=IGNORE)

    def compute_metrics(self, eval_pred):
        logits, labels = logits_of(eval_pred)
        tags = self.outputs
        predicted = logits.argmax(axis=-1)
        gold_seqs, pred_seqs = [], []
        for row_labels, row_pred in zip(labels, predicted, strict=True):
            keep = row_labels != IGNORE
            gold_seqs.append([tags[i] for i in row_labels[keep]])
            pred_seqs.append(repair([tags[i] for i in row_pred[keep]]))
        return {"entity_f1": entity_f1(gold_seqs, pred_seqs)}

    def predict(self, clf, examples):
        p = clf.params
        words, enc = self.tokenize_words(clf.tokenizer_, examples, p.max_length)
        rows, latency = clf.logit_rows(enc, per_token=True)
        tags_out = self.outputs
        records = []
        cut_sentences = cut_words = 0
        for i, ex in enumerate(examples):
            word_ids = enc.word_ids(i)
            first = first_subtokens(word_ids)
            logits = np.asarray(rows[i], dtype=np.float64)
            shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
            probs = shifted / shifted.sum(axis=-1, keepdims=True)
            raw, confidence = [], []
            for w in range(len(words[i])):
                position = first.get(w)
                if position is None:
                    raw.append(OUTSIDE)
                    confidence.append(None)
                    continue
                best = int(probs[position].argmax())
                raw.append(tags_out[best])
                confidence.append(round(float(probs[position][best]), 6))
            last = max(first) if first else -1
            truncated = len(enc["input_ids"][i]) >= p.max_length
            past = len(words[i]) - 1 - last if truncated else 0
            unaligned = len(words[i]) - len(first) - past
            tags = repair(raw)
            counts: dict[str, Any] = {"confidence": confidence}
            if past:
                counts["truncated_tokens"] = past
                cut_sentences += 1
                cut_words += past
            if unaligned:
                counts["unaligned_tokens"] = unaligned
            details = entity_details(ex.text, words[i], tags, **counts)
            records.append(
                PredictionRecord(
                    id=ex.id,
                    gold=ex.label,
                    predicted=tags,
                    status=Status.OK,
                    scores=None,
                    latency_s=latency[i],
                    metadata=dict(ex.metadata),
                    details=details,
                )
            )
        if cut_sentences:
            log.warning(
                "%d of %d sentences are longer than max_length=%d sub-tokens: their last %d words in all "
                "were tagged O (details.truncated_tokens); raise max_length to tag them",
                cut_sentences,
                len(examples),
                p.max_length,
                cut_words,
            )
        return records

    def score_records(self, records):
        pairs = [(r.gold, r.predicted or [OUTSIDE] * len(r.gold)) for r in records if r.gold is not None]
        if not pairs:
            return None
        return entity_f1([g for g, _ in pairs], [p for _, p in pairs])

    def info(self) -> dict[str, Any]:
        return {"task_type": self.task_type, "tags": self.outputs}

    @classmethod
    def from_info(cls, schema, info):
        head = cls(schema)
        recorded = info.get("tags")
        if recorded is not None and list(recorded) != head.outputs:
            raise ConfigError(
                f"model info: field 'tags' is {recorded}; expected {head.outputs} (O, then B-/I- per "
                "entity type of the schema)"
            )
        return head


__all__ = ["TokenHead", "align_labels", "entity_f1", "first_subtokens", "tag_set"]
