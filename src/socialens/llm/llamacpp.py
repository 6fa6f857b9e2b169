"""Local GGUF models through llama-cpp-python (fast on a CPU).

- ``render`` applies the chat template stored in the GGUF (``tokenizer.chat_template``) with
  llama-cpp-python's ``Jinja2ChatFormatter`` (``add_generation_prompt=True``); a model without a
  template (a base model such as Gemma 3 270M) gets plain text: the system text, the user text,
  earlier assistant turns as ``Answer: ...``, and a final ``Answer:`` line. No fake chat markup.
- ``generate`` decodes greedily by default. With ``params.choices`` it is constrained by a GBNF
  grammar whose root is an optional leading space followed by an alternation of the choice strings;
  the output is checked to be exactly one of them. With ``params.json_schema`` it is constrained
  by the grammar llama-cpp-python builds from the JSON schema (``LlamaGrammar.from_json_schema``),
  stop strings off (one could cut the JSON short); an answer cut short by ``max_tokens`` comes
  back as it is, for the task's parser to call invalid.
- ``score`` evaluates the prompt's tokens once, keeps their KV cache and, for each continuation,
  decodes only the continuation's tokens on top of it (rewinding the cache to the prompt after
  each). The cache is also reused across calls: a prompt sharing a prefix (system text, few-shot
  examples) with the previous call only evaluates the differing tail.
- ``score_batch`` and constrained ``generate`` (``params.choices``) can work on groups of texts at
  once (``batch_texts``, see ``llamacpp_batch``): the shared prefix evaluated once, every text's
  suffix in one llama.cpp batch on its own sequence, then the multi-token label continuations of
  every text, a batch a turn (scoring), or one token of every text a step (constrained: greedy
  under the label grammar, token by token, as the grammar sampler picks). The context then has
  ``batch_texts + 1`` sequences, each in its own KV stream of ``n_ctx`` cells. A text that does not
  fit (its prompt is too long), whose batch fails, or whose label merges into the prompt's last
  token is done one at a time, as ``batch_texts: 1`` (the default) does for every text. A batched
  text's ``latency_s`` is its share of its group's time, and its scores round with its batch (other
  batch shapes flip int8 activation roundings in llama.cpp's quantised kernels: up to about half a
  log-probability on the tiny built-in models, where one text at a time is bit-stable). The default
  stays one text at a time: on the 2-core CPU measured, batches gained under 10% (docs/benchmarks.md).

Before the model is loaded, a child process loads it with the same settings and evaluates a few
tokens (``native_probe``): a llama.cpp kernel this CPU cannot run (AMX under some hypervisors) then
fails that child, not this process. ``extra_buffers`` (llama.cpp's weight-repacking buffer types)
is ``auto`` by default: on only where a probe with them on survived on this machine.

The model is loaded with ``logits_all=False`` (llama-cpp-python then keeps no per-token logits
buffer of n_ctx x n_vocab floats); scoring asks llama.cpp for logits of just the continuation
positions it needs in its own batch.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from socialens.core.errors import ConfigError
from socialens.core.models import resolve_model
from socialens.core.params import FamilyParams
from socialens.llm.base import (
    ANSWER_PREFIX_PLAIN,
    Completion,
    GenerationParams,
    Messages,
    Scores,
    render_plain,
)
from socialens.llm.llamacpp_batch import (
    AUTO_MAX_TEXTS,
    ChoiceConstraint,
    ConstrainedItem,
    DecodeFailed,
    ScoringItem,
    SequenceEngine,
    common_prefix_len,
    constrained_group,
    log_softmax,
    multi_sequence_context,
    plan_groups,
    score_group,
)
from socialens.llm.native_probe import ExtraBuffers, llama_model_params, resolve_extra_buffers

__all__ = ["LlamaCppBackend", "choices_grammar", "common_prefix_len", "gbnf_literal", "log_softmax"]

INSTALL_HINT = "pip install 'socialens[llm]'"
MAX_BATCH_TEXTS = 64


def gbnf_literal(text: str) -> str:
    """``text`` as a GBNF string literal (quotes, backslashes and control characters escaped)."""
    escaped = (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{escaped}"'


def choices_grammar(choices: tuple[str, ...] | list[str]) -> str:
    """A GBNF grammar matching exactly one of ``choices``, optionally after one leading space.

    The optional space lets the model use its usual word-initial tokens (" false") instead of being
    forced into unnatural splits; it is stripped from the output. Alternation handles choices that
    share a prefix ("hate" / "hateful"): the grammar only ends when a whole choice has been produced.
    """
    if not choices:
        raise ValueError("constrained decoding needs at least one choice")
    alternatives = " | ".join(gbnf_literal(c) for c in dict.fromkeys(choices))
    return f'root ::= " "? ({alternatives})\n'


class LlamaCppBackend:
    """An ``LLMBackend`` over one llama-cpp-python ``Llama`` (loaded once, not thread-safe)."""

    name = "llamacpp"

    class Options(FamilyParams):
        n_ctx: int = 2048
        # None: half the CPUs (llama-cpp-python's default). On the shared 2-core box, 2 threads
        # scored 5x slower than 1, batched or not (docs/benchmarks.md, issue 14).
        n_threads: int | None = None
        n_batch: int = 512
        seed: int = 0
        verbose: bool = False
        extra_buffers: ExtraBuffers = "auto"
        # Texts scored (or constrained-decoded) together; "auto": as many as fit one n_batch decode
        # call, at most 8. 1 (one at a time) by default: on the 2-core CPU this was measured on,
        # batches gained under 10% and round scores differently (docs/benchmarks.md, issue 14).
        # Batches hold (batch_texts + 1) x n_ctx KV cells: a stream per text.
        batch_texts: Annotated[int, Field(ge=1, le=MAX_BATCH_TEXTS)] | Literal["auto"] = 1
        # llama.cpp's flash attention. Off: measured on the batched path (docs/benchmarks.md,
        # issue 14) it was no faster on a 2-core CPU and moved scores further from the unbatched ones.
        flash_attn: bool = False

    def __init__(self, model: str, **options: Any):
        self.options = self.Options(**options)
        try:
            import llama_cpp
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        except ImportError:
            raise ConfigError(f"the llamacpp backend needs llama-cpp-python: {INSTALL_HINT}") from None
        self._llama_cpp = llama_cpp
        path = Path(resolve_model(model))
        if not path.is_file():
            raise ConfigError(f"llamacpp backend: model '{model}' is not a GGUF file ({path} does not exist)")
        self.model_path = str(path)
        self.model_id = f"{path.name}:{path.stat().st_size}"
        threads = self.options.n_threads or max((os.cpu_count() or 1) // 2, 1)
        self.extra_buffers = resolve_extra_buffers(self.model_path, self.options.extra_buffers, threads)
        # One sequence (a KV stream of n_ctx cells) per text of a group, plus llama-cpp-python's.
        auto = self.options.batch_texts == "auto"
        self.batch_texts = AUTO_MAX_TEXTS if auto else int(self.options.batch_texts)
        n_seq_max = 1
        self.flash_attn = self.options.flash_attn
        if self.batch_texts > 1:
            n_seq_max = min(int(llama_cpp.llama_max_parallel_sequences()), 1 + self.batch_texts)
        try:
            with llama_model_params(self.extra_buffers), multi_sequence_context(n_seq_max):
                self.llm = llama_cpp.Llama(
                    model_path=self.model_path,
                    n_ctx=self.options.n_ctx * n_seq_max,
                    n_batch=self.options.n_batch,
                    n_threads=threads,
                    n_threads_batch=threads,
                    seed=self.options.seed,
                    logits_all=False,
                    verbose=self.options.verbose,
                    flash_attn=self.flash_attn,
                )
        except ValueError as error:  # llama-cpp-python raises ValueError on an unreadable file
            raise ConfigError(f"llamacpp backend: cannot load '{path}': {error}") from None
        self.n_ctx = self.llm.n_ctx() // n_seq_max  # the cells of one sequence
        self.n_vocab = self.llm.n_vocab()
        self.engine = SequenceEngine(self.llm) if self.batch_texts > 1 else None
        if self.engine is not None and self.engine.n_seq_max < 2:  # the context ignored the setting
            self.engine.close()
            self.engine = None
        self.batch_fallbacks = 0  # texts a group could not take, done one at a time instead
        self._pieces: tuple[dict[bytes, list[int]], dict[int, bytes], list[int]] | None = None
        template = self.llm.metadata.get("tokenizer.chat_template")
        self._formatter = None
        if template:
            self._formatter = Jinja2ChatFormatter(
                template=template,
                eos_token=self._token_text(self.llm.token_eos()),
                bos_token=self._token_text(self.llm.token_bos()),
                add_generation_prompt=True,
            )
        # A plain-text prompt ends with "Answer:"; the answer follows after a space.
        self.answer_prefix = "" if self._formatter else ANSWER_PREFIX_PLAIN
        self._grammars: dict[tuple[str, ...], Any] = {}
        self._schema_grammars: dict[str, Any] = {}
        # (tokens in the KV cache, log-probabilities of the next token after them) or None
        self._next_logprobs: tuple[tuple[int, ...], np.ndarray] | None = None

    # ------------------------------------------------------------------ rendering / tokens
    @property
    def has_chat_template(self) -> bool:
        return self._formatter is not None

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self.llm._model.token_get_text(token)

    def render(self, messages: Messages) -> str:
        if self._formatter is not None:
            return self._formatter(messages=messages).prompt
        return render_plain(messages)

    def tokenize(self, text: str) -> list[int]:
        """Tokens of rendered text, special tokens parsed; BOS added unless the text carries it."""
        bos = self.llm.token_bos()
        bos_text = self._token_text(bos)
        add_bos = not (bos_text and text.startswith(bos_text))
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    # ------------------------------------------------------------------ generation
    def _grammar(self, choices: tuple[str, ...]):
        grammar = self._grammars.get(choices)
        if grammar is None:
            grammar = self._llama_cpp.LlamaGrammar.from_string(choices_grammar(choices), verbose=False)
            self._grammars[choices] = grammar
        return grammar

    def _json_grammar(self, schema: str):
        """The GBNF grammar of a JSON schema (JSON text), built once per schema."""
        grammar = self._schema_grammars.get(schema)
        if grammar is None:
            grammar = self._llama_cpp.LlamaGrammar.from_json_schema(schema, verbose=False)
            self._schema_grammars[schema] = grammar
        return grammar

    def generate(self, prompts: list[Messages], params: GenerationParams) -> list[Completion]:
        if params.choices and params.temperature == 0 and self.engine is not None and len(prompts) > 1:
            return self._generate_choices_batched(prompts, params)
        return [self._generate_one(prompt, params) for prompt in prompts]

    @staticmethod
    def constrained_budget(params: GenerationParams) -> int:
        """Tokens a constrained answer may take: room for the longest choice (a character per
        token in the worst case, plus the optional space and the end token)."""
        return max(params.max_tokens, max(len(c) for c in params.choices) + 2)

    def _choice_tables(self) -> tuple[dict[bytes, list[int]], dict[int, bytes], list[int]]:
        """(token ids by the text llama.cpp's grammar sees for them, that text by id, the
        end-of-generation ids), read from the vocabulary once."""
        if self._pieces is None:
            llama_cpp = self._llama_cpp
            vocab = self.llm._model.vocab
            size = 64
            buffer = (llama_cpp.ctypes.c_char * size)()
            by_piece: dict[bytes, list[int]] = {}
            piece_of: dict[int, bytes] = {}
            eog: list[int] = []
            for token in range(self.n_vocab):
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    eog.append(token)
                    continue
                n = llama_cpp.llama_token_to_piece(vocab, token, buffer, size, 0, True)
                if n < 0:  # a piece longer than the buffer: no label needs it whole
                    continue
                piece = bytes(buffer[:n])
                if piece and piece[0] != 0:  # the grammar rejects empty pieces
                    by_piece.setdefault(piece, []).append(token)
                    piece_of[token] = piece
            self._pieces = (by_piece, piece_of, eog)
        return self._pieces

    def _generate_choices_batched(
        self, prompts: list[Messages], params: GenerationParams
    ) -> list[Completion]:
        """Constrained greedy decoding of many prompts, a group of texts per decode call."""
        choices = tuple(params.choices)
        budget = self.constrained_budget(params)
        results: list[Completion | None] = [None] * len(prompts)
        items = []
        for index, prompt in enumerate(prompts):
            try:
                tokens = self.tokenize(self.render(prompt))
            except Exception:  # noqa: BLE001 - the one-at-a-time path reports it
                continue
            if len(tokens) < self.n_ctx:
                items.append(ConstrainedItem(index, tokens, reserve=budget))
        if items:
            by_piece, piece_of, eog = self._choice_tables()
            constraint = ChoiceConstraint(choices, by_piece, eog)
            for item in items:
                item.reserve = min(budget, constraint.longest)  # a token is at least one byte
            decoded = self._decoded_groups(
                items, lambda engine, group: constrained_group(engine, group, constraint, piece_of, budget)
            )
            for group, _, share in decoded:
                for item in group:
                    text = self.llm.detokenize(item.generated).decode("utf-8", errors="ignore")
                    completion = Completion(
                        text=text,
                        tokens_in=len(item.tokens),
                        tokens_out=len(item.generated),
                        latency_s=share,
                        finish_reason=item.finish_reason,
                    )
                    results[item.index] = self._checked_choice(completion, choices)
        for index, result in enumerate(results):
            if result is None:
                self.batch_fallbacks += 1
                results[index] = self._generate_one(prompts[index], params)
        return results  # type: ignore[return-value]

    @staticmethod
    def _checked_choice(completion: Completion, choices: tuple[str, ...]) -> Completion:
        """The answer without its optional leading space, or an error if it is no choice."""
        text = completion.text
        answer = text[1:] if text.startswith(" ") and text[1:] in choices else text
        if answer not in choices:
            completion.error = f"constrained output {text!r} is not one of the choices"
            completion.text = ""
        else:
            completion.text = answer
        return completion

    def _group_limit(self) -> int:
        return self.batch_texts

    def _one_call(self) -> int | None:
        """Auto-sized groups keep their suffixes to one decode call; a set size may take several."""
        return self.llm.n_batch if self.options.batch_texts == "auto" else None

    def _generate_one(self, prompt: Messages, params: GenerationParams) -> Completion:
        start = time.perf_counter()
        tokens_in = 0
        try:
            tokens = self.tokenize(self.render(prompt))
            tokens_in = len(tokens)
            if tokens_in >= self.n_ctx:
                raise ValueError(f"prompt has {tokens_in} tokens, the context window n_ctx={self.n_ctx}")
            kwargs: dict[str, Any] = {
                "max_tokens": params.max_tokens,
                "temperature": params.temperature,
                "top_p": params.top_p,
                "seed": params.seed,
                "stop": list(params.stop) or None,
                "repeat_penalty": 1.0,
            }
            if params.choices:
                # The grammar ends generation once a whole choice is out; stop strings could cut a
                # choice short.
                kwargs["grammar"] = self._grammar(tuple(params.choices))
                kwargs["stop"] = None
                kwargs["max_tokens"] = self.constrained_budget(params)
            elif params.json_schema is not None:
                kwargs["grammar"] = self._json_grammar(params.json_schema)
                kwargs["stop"] = None
            self._next_logprobs = None  # generate moves the KV cache
            result = self.llm.create_completion(prompt=tokens, **kwargs)
            choice = result["choices"][0]
            text = choice["text"]
            usage = result.get("usage") or {}
            completion = Completion(
                text=text,
                tokens_in=usage.get("prompt_tokens", tokens_in),
                tokens_out=usage.get("completion_tokens", 0),
                latency_s=time.perf_counter() - start,
                finish_reason=choice.get("finish_reason"),
            )
            if params.choices:
                return self._checked_choice(completion, tuple(params.choices))
            return completion
        except Exception as error:  # one failed prompt must not lose the others
            return Completion(
                text="",
                tokens_in=tokens_in,
                latency_s=time.perf_counter() - start,
                finish_reason="error",
                error=f"{type(error).__name__}: {error}",
            )

    # ------------------------------------------------------------------ scoring
    def _logprobs_after(self, context: list[int]) -> np.ndarray:
        """Make the KV cache hold exactly ``context``; return log-probabilities of the next token.

        Reuses the longest common prefix with what the cache already holds (from an earlier
        score or generate call) and evaluates only the rest."""
        key = tuple(context)
        if (
            self._next_logprobs is not None
            and self._next_logprobs[0] == key
            and self.llm.n_tokens == len(key)
        ):
            return self._next_logprobs[1]
        llm = self.llm
        keep = common_prefix_len(llm.input_ids[: llm.n_tokens], context)
        keep = min(keep, len(context) - 1)  # re-evaluate at least one token to get its logits
        llm._ctx.kv_cache_seq_rm(-1, keep, -1)
        llm.n_tokens = keep
        self._next_logprobs = None
        llm.eval(context[keep:])  # logits_all=False: llama.cpp computes logits of the last token only
        llm._requires_eval = True  # our manual KV edits: let generate refresh logits before sampling
        logits = np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(self.n_vocab,))
        logprobs = log_softmax(logits)
        self._next_logprobs = (key, logprobs)
        return logprobs

    def _continuation_logprob(self, context_len: int, first: np.ndarray, tokens: list[int]) -> float:
        """Summed log-probability of ``tokens`` after the cached context of ``context_len`` tokens.

        The first token's log-probability comes from ``first``; the others need one decode of
        ``tokens[:-1]`` on top of the context, after which the cache is rewound to the context."""
        total = float(first[tokens[0]])
        if len(tokens) == 1:
            return total
        llm = self.llm
        feed = tokens[:-1]
        if len(feed) > llm.n_batch:
            raise ValueError(f"continuation of {len(tokens)} tokens is longer than n_batch={llm.n_batch}")
        try:
            llm._batch.set_batch(batch=feed, n_past=context_len, logits_all=True)
            llm._ctx.decode(llm._batch)
            logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(len(feed), self.n_vocab))
            rows = log_softmax(logits)
            total += float(rows[np.arange(len(feed)), tokens[1:]].sum())
        finally:
            llm._ctx.kv_cache_seq_rm(-1, context_len, -1)
        return total

    def _targets(
        self, rendered: str, prefix: list[int], continuations: list[str]
    ) -> list[tuple[int, list[int]]]:
        """(where its own tokens start, those tokens) for each continuation after ``rendered``."""
        targets = []
        for continuation in continuations:
            full = self.tokenize(rendered + self.answer_prefix + continuation)
            # Usually ``full`` starts with ``prefix``; when the boundary merges (the prompt's
            # last token absorbs the continuation's start), score from the common prefix on.
            common = common_prefix_len(prefix, full)
            tokens = full[common:]
            if not tokens:
                raise ValueError(f"continuation {continuation!r} has no tokens of its own")
            if common == 0:
                raise ValueError(f"continuation {continuation!r} merges with the whole prompt")
            if len(full) > self.n_ctx:
                raise ValueError(
                    f"prompt + continuation have {len(full)} tokens, the context window n_ctx={self.n_ctx}"
                )
            targets.append((common, tokens))
        return targets

    def score(self, prompt: Messages, continuations: list[str]) -> Scores:
        start = time.perf_counter()
        tokens_in = 0
        try:
            rendered = self.render(prompt)
            prefix = self.tokenize(rendered)
            tokens_in = len(prefix)
            logprobs: list[float] = []
            counts: list[int] = []
            for common, tokens in self._targets(rendered, prefix, continuations):
                first = self._logprobs_after(prefix[:common])
                logprobs.append(self._continuation_logprob(common, first, tokens))
                counts.append(len(tokens))
            return Scores(
                logprobs=logprobs,
                tokens_in=tokens_in,
                continuation_tokens=counts,
                latency_s=time.perf_counter() - start,
            )
        except Exception as error:
            return Scores(
                logprobs=[],
                tokens_in=tokens_in,
                latency_s=time.perf_counter() - start,
                error=f"{type(error).__name__}: {error}",
            )

    def _decoded_groups(self, items: list, decode) -> Iterator[tuple[list, Any, float]]:
        """Each group of ``items`` (as ``plan_groups`` packs them) with ``decode(engine, group)``'s
        output and its per-text share of the time; a group whose decode fails is skipped, so its
        texts are left to the one-at-a-time path."""
        groups, _ = plan_groups(
            items, max_texts=self._group_limit(), n_ctx=self.n_ctx, n_batch=self._one_call()
        )
        for group in groups:
            start = time.perf_counter()
            self._next_logprobs = None
            try:
                output = decode(self.engine, group)
            except DecodeFailed:
                continue
            yield group, output, (time.perf_counter() - start) / len(group)

    def score_batch(self, prompts: list[Messages], continuations: list[str]) -> list[Scores]:
        """One Scores per prompt, in order, each as ``score(prompt, continuations)`` would give
        (within float rounding of other batch shapes), from groups of texts decoded together."""
        results: list[Scores | None] = [None] * len(prompts)
        if self.engine is not None and len(prompts) > 1 and continuations:
            items = []
            for index, prompt in enumerate(prompts):
                try:
                    rendered = self.render(prompt)
                    prefix = self.tokenize(rendered)
                    item = ScoringItem(index, prefix, self._targets(rendered, prefix, continuations))
                except Exception:  # noqa: BLE001 - the one-at-a-time path reports it
                    continue
                if item.aligned:  # else a continuation merges into the prompt: scored alone
                    items.append(item)
            for group, scored, share in self._decoded_groups(items, score_group):
                for item, (logprobs, counts) in zip(group, scored, strict=True):
                    results[item.index] = Scores(
                        logprobs=logprobs,
                        tokens_in=len(item.tokens),
                        continuation_tokens=counts,
                        latency_s=share,
                    )
        for index, result in enumerate(results):
            if result is None:
                if self.engine is not None and len(prompts) > 1:
                    self.batch_fallbacks += 1
                results[index] = self.score(prompts[index], continuations)
        return results  # type: ignore[return-value]

    def close(self) -> None:
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.close()
            self.engine = None
        llm = getattr(self, "llm", None)
        if llm is not None:
            llm.close()
            self.llm = None
        self._next_logprobs = None

    def __enter__(self) -> LlamaCppBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
