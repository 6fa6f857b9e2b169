"""A local Hugging Face causal LM through transformers (optionally with a LoRA adapter via peft).

The model is a local folder, a hub id, or a GGUF file (``builtin:smollm2-135m-instruct`` is one).
transformers de-quantises a GGUF into torch in tens of seconds, so a GGUF is converted once and
cached as a safetensors folder under ``<cache root>/models/<name>/`` (cache root:
``$SOCIALENS_CACHE_DIR`` or ``~/.cache/socialens``), written to a temporary folder and renamed into
place so that a killed or concurrent conversion never leaves a half-written model behind.

Generation is batched (left padding) and greedy at temperature 0. Constrained decoding restricts
each step to the tokens that continue one of the choices, as they tokenize after the prompt, and
forces end-of-sequence once a full choice is generated that no longer choice continues; the
Completion's text is then exactly that choice (a leading space is allowed, as in the llamacpp
grammar, and not part of the answer). Scoring runs the prompt once and scores all the
continuations as one batch on a copy of its key/value cache; as in the llamacpp backend, a
continuation follows the prompt directly after a chat template and after one space after a plain
``Answer:`` prompt, and when the boundary merges tokens the differing tail is scored.
``score_batch`` scores many prompts at once (``batch_texts`` per forward pass, their common prefix
run once and its cache kept for the next batch: ``socialens.llm.hf_scoring``) and gives what
``score`` gives prompt by prompt, within float rounding (about 1e-5 measured on SmolLM2).
``device: auto`` (the default) runs on CUDA when torch sees a device, else on the CPU.

``params.json_schema`` is not enforced here: transformers has no JSON-schema constraint of its own,
and a token-level JSON automaton over the tokenizer's vocabulary (what llama.cpp's grammar does) is
not cheap to build per schema. The answer is generated freely (stop strings kept) and the task's
parser reads it, so an answer that is not valid JSON for the schema is ``invalid``, as it would be
from any unconstrained model. Use the llamacpp backend (the same GGUF) for constrained JSON.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from socialens.core.errors import ConfigError
from socialens.core.models import BUILTIN_PREFIX, is_builtin, resolve_model
from socialens.core.params import FamilyParams
from socialens.core.runtime import cache_dir, torch_threads
from socialens.llm.base import (
    ANSWER_PREFIX_PLAIN,
    Completion,
    GenerationParams,
    Messages,
    Scores,
    render_plain,
)
from socialens.llm.hf_scoring import BatchScorer, TokenRequest, output_cache

log = logging.getLogger(__name__)


def converted_gguf_dir(gguf_path: str | Path, name: str | None = None) -> Path:
    """The safetensors folder converted from ``gguf_path``, converting it on first use."""
    gguf_path = Path(gguf_path).resolve()
    if name is None:
        stat = gguf_path.stat()
        digest = hashlib.sha256(f"{gguf_path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:10]
        name = f"{gguf_path.stem}-{digest}"
    target = cache_dir() / "models" / name
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to a safetensors folder at %s (once; about a minute)", gguf_path, target)
    folder, file = gguf_path.parent, gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file)
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        if getattr(quantizer, "packed_modules", None):
            raise ConfigError(f"{gguf_path}: transformers kept this GGUF quantised; it cannot be converted")
        # The weights are de-quantised torch tensors: drop the GGUF loader so they save as plain ones.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}.tmp-"))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "config.json").is_file():  # not a concurrent conversion that won
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def model_folder(model: str) -> str:
    """What ``from_pretrained`` loads for a model reference: a GGUF file (``builtin:`` ones
    included) becomes its cached safetensors conversion; anything else resolves as usual."""
    resolved = resolve_model(model)
    if Path(resolved).is_file() and resolved.endswith(".gguf"):
        name = model[len(BUILTIN_PREFIX) :] if is_builtin(model) else None
        return str(converted_gguf_dir(resolved, name))
    return resolved


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a CUDA device, else ``cpu``; anything else as given."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class _ChoiceTrie:
    """Token sequences of the allowed answers: which tokens may follow a generated prefix."""

    def __init__(self, sequences: dict[tuple[int, ...], str], eos_id: int):
        self.eos_id = eos_id
        self.answers = sequences
        self.next: dict[tuple[int, ...], set[int]] = {}
        for seq in sequences:
            for i in range(len(seq)):
                self.next.setdefault(seq[:i], set()).add(seq[i])
        self.longest = max((len(seq) for seq in sequences), default=0)

    def allowed(self, generated: tuple[int, ...]) -> list[int]:
        tokens = set(self.next.get(generated, ()))
        if generated in self.answers or not tokens:
            tokens.add(self.eos_id)
        return sorted(tokens)


class HFBackend:
    name = "hf"

    class Options(FamilyParams):
        adapter: str | None = None  # a LoRA adapter folder (peft) applied on top
        batch_size: int = Field(8, ge=1)  # prompts per generate pass; continuations per score pass
        batch_texts: int = Field(8, ge=1)  # texts per forward pass in score_batch (as in llamacpp)
        device: str = "auto"  # auto: cuda when torch sees one, else cpu; or any torch device name
        dtype: Literal["float32", "float16", "bfloat16"] = "float32"
        # torch CPU threads while generating/scoring (restored after); None: torch's default. On a
        # machine shared with other busy processes, fewer threads than cores can be many times faster.
        threads: int | None = Field(None, ge=1)
        max_length: int | None = Field(2048, ge=1)  # generation keeps the last max_length prompt tokens

    def __init__(self, model: str, **options: Any):
        self.options = self.Options(**options)
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError:
            raise ConfigError("the hf backend needs torch and transformers: pip install socialens") from None
        self._torch = torch
        self.device = resolve_device(self.options.device)
        self.model_id = resolve_model(model)
        folder = model_folder(model)
        dtype = getattr(torch, self.options.dtype)
        self.tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, trust_remote_code=False)
        if self.options.adapter:
            try:
                from peft import PeftModel
            except ImportError:
                raise ConfigError(
                    "the hf backend's adapter option needs peft: pip install 'socialens[llm]'"
                ) from None
            adapter = resolve_model(self.options.adapter)
            self.model = PeftModel.from_pretrained(self.model, adapter)
            self.model_id += f"+lora:{adapter}"
        if self.options.dtype != "float32":
            self.model_id += f"@{self.options.dtype}"
        self.model.to(self.device)
        self.model.eval()
        tok = self.tokenizer
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        tok.padding_side = "left"
        self.eos_ids = self._eos_ids()
        self.has_chat_template = bool(getattr(tok, "chat_template", None))
        self.scorer = BatchScorer(self.model, tok.pad_token_id, self.options.batch_texts)

    def _eos_ids(self) -> list[int]:
        found = self.model.generation_config.eos_token_id
        ids = list(found) if isinstance(found, list | tuple) else [found] if found is not None else []
        if self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id not in ids:
            ids.insert(0, self.tokenizer.eos_token_id)
        if not ids:
            raise ConfigError(f"{self.model_id}: the model has no end-of-sequence token")
        return ids

    def __repr__(self) -> str:
        return f"HFBackend(model_id={self.model_id!r}, options={self.options.model_dump()!r})"

    # -- protocol ---------------------------------------------------------------------------------

    def render(self, messages: Messages) -> str:
        if self.has_chat_template:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return render_plain(messages)

    def _encode(self, text: str) -> list[int]:
        # A chat template writes its own special tokens (BOS included); plain text needs them added.
        return self.tokenizer(text, add_special_tokens=not self.has_chat_template)["input_ids"]

    def generate(self, prompts: list[Messages], params: GenerationParams) -> list[Completion]:
        results: list[Completion] = []
        size = self.options.batch_size
        for i in range(0, len(prompts), size):
            batch = prompts[i : i + size]
            try:
                with torch_threads(self.options.threads):
                    results.extend(self._generate_batch(batch, params))
            except Exception as error:  # noqa: BLE001 - one bad batch must not lose the others
                log.exception("hf generation failed for a batch of %d prompts", len(batch))
                results.extend(Completion(text="", error=f"{type(error).__name__}: {error}") for _ in batch)
        return results

    def _generate_batch(self, prompts: list[Messages], params: GenerationParams) -> list[Completion]:
        torch = self._torch
        start = time.perf_counter()
        texts = [self.render(p) for p in prompts]
        full_ids = [self._encode(t) for t in texts]
        ids = [self._truncate(i) for i in full_ids]
        batch = self.tokenizer.pad({"input_ids": ids}, padding=True, return_tensors="pt")
        batch = {k: v.to(self.device) for k, v in batch.items()}
        width = batch["input_ids"].shape[1]
        kwargs: dict[str, Any] = {
            "max_new_tokens": params.max_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self.eos_ids,
        }
        if params.temperature > 0:
            torch.manual_seed(params.seed)
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        tries: list[_ChoiceTrie] | None = None
        if params.choices:
            tries = [self._choice_trie(t, i, params.choices) for t, i in zip(texts, full_ids, strict=True)]
            kwargs["max_new_tokens"] = max(t.longest for t in tries) + 1

            def allowed(batch_id: int, input_ids) -> list[int]:
                return tries[batch_id].allowed(tuple(input_ids[width:].tolist()))

            kwargs["prefix_allowed_tokens_fn"] = allowed
        elif params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        with torch.no_grad():
            output = self.model.generate(**batch, **kwargs)
        latency = (time.perf_counter() - start) / len(prompts)
        completions = []
        for row, prompt_ids in enumerate(ids):
            generated = output[row, width:].tolist()
            finish = "length"
            for j, token in enumerate(generated):
                if token in self.eos_ids:
                    generated, finish = generated[: j + 1], "stop"
                    break
            content = [t for t in generated if t not in self.eos_ids]
            text = self.tokenizer.decode(content, skip_special_tokens=True)
            if tries is not None:
                text = tries[row].answers.get(tuple(content), text)
            elif params.stop:
                cut = min((text.find(s) for s in params.stop if s in text), default=-1)
                if cut >= 0:
                    text, finish = text[:cut], "stop"
            completions.append(
                Completion(
                    text=text,
                    tokens_in=len(prompt_ids),
                    tokens_out=len(generated),
                    latency_s=latency,
                    finish_reason=finish,
                )
            )
        return completions

    def _truncate(self, ids: list[int]) -> list[int]:
        limit = self.options.max_length
        if limit is not None and len(ids) > limit:
            log.warning("prompt of %d tokens truncated to its last %d (max_length)", len(ids), limit)
            return ids[-limit:]
        return ids

    def _tail_ids(self, prompt_text: str, prompt_ids: list[int], continuation: str) -> tuple[list[int], int]:
        """Token ids of prompt+continuation and where they first differ from the prompt's own."""
        full = self._encode(prompt_text + continuation)
        if full[: len(prompt_ids)] == prompt_ids:
            return full, len(prompt_ids)
        common = 0
        for a, b in zip(full, prompt_ids, strict=False):
            if a != b:
                break
            common += 1
        return full, common

    def _choice_trie(self, prompt_text: str, prompt_ids: list[int], choices: tuple[str, ...]) -> _ChoiceTrie:
        sequences: dict[tuple[int, ...], str] = {}
        # As in the llamacpp grammar: each choice, optionally after one leading space (the model's
        # usual word-initial tokens); either way the answer is the choice itself.
        for choice in dict.fromkeys(choices):
            variants = [choice] + ([" " + choice] if not choice[:1].isspace() else [])
            for variant in variants:
                full, common = self._tail_ids(prompt_text, prompt_ids, variant)
                if common == len(prompt_ids):
                    seq = tuple(full[common:])
                else:  # the choice merges with the prompt's last token: use its own tokens
                    seq = tuple(self.tokenizer(variant, add_special_tokens=False)["input_ids"])
                if seq:
                    sequences.setdefault(seq, choice)
        return _ChoiceTrie(sequences, self.eos_ids[0])

    @property
    def answer_prefix(self) -> str:
        """Put between the rendered prompt and a scored continuation (a space after ``Answer:``)."""
        return "" if self.has_chat_template else ANSWER_PREFIX_PLAIN

    def score(self, prompt: Messages, continuations: list[str]) -> Scores:
        start = time.perf_counter()
        try:
            with torch_threads(self.options.threads):
                return self._score(prompt, continuations, start)
        except Exception as error:  # noqa: BLE001 - reported in the Scores, as the other backends do
            log.exception("hf scoring failed")
            return Scores(
                logprobs=[], latency_s=time.perf_counter() - start, error=f"{type(error).__name__}: {error}"
            )

    def _score(self, prompt: Messages, continuations: list[str], start: float) -> Scores:
        torch = self._torch
        text = self.render(prompt)
        prompt_ids = self._encode(text)  # not truncated: scoring needs the whole prompt
        pairs = [self._tail_ids(text, prompt_ids, self.answer_prefix + c) for c in continuations]
        # The prefix shared by the prompt and every prompt+continuation runs once.
        shared = min([len(prompt_ids)] + [common for _, common in pairs])
        if shared == 0:
            raise ValueError("cannot score after an empty prompt")
        device = self.device
        logprobs: list[float] = [0.0] * len(continuations)
        counts = [len(full) - common for full, common in pairs]
        todo = [i for i, n in enumerate(counts) if n > 0]
        with torch.no_grad():
            prefix = torch.tensor([prompt_ids[:shared]], device=device)
            out = self.model(input_ids=prefix, use_cache=True)
            last = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
            for i in range(0, len(todo), self.options.batch_size):
                rows = todo[i : i + self.options.batch_size]
                tails = [pairs[r][0][shared:] for r in rows]
                width = max(len(t) for t in tails)
                pad = self.tokenizer.pad_token_id
                input_ids = torch.tensor([t + [pad] * (width - len(t)) for t in tails], device=device)
                mask = torch.tensor(
                    [[1] * (shared + len(t)) + [0] * (width - len(t)) for t in tails], device=device
                )
                cache = copy.deepcopy(output_cache(out))
                cache.batch_repeat_interleave(len(rows))
                step = self.model(
                    input_ids=input_ids, attention_mask=mask, use_cache=True, **{self.scorer.cache_arg: cache}
                )
                lp = torch.log_softmax(step.logits.float(), dim=-1)
                for b, r in enumerate(rows):
                    full, common = pairs[r]
                    total = 0.0
                    for pos in range(common, len(full)):  # absolute position of a scored token
                        k = pos - shared  # its index in the tail
                        dist = last if k == 0 else lp[b, k - 1]
                        total += float(dist[full[pos]])
                    logprobs[r] = total
        return Scores(
            logprobs=logprobs,
            tokens_in=len(prompt_ids),
            continuation_tokens=counts,
            latency_s=time.perf_counter() - start,
        )

    def score_batch(self, prompts: list[Messages], continuations: list[str]) -> list[Scores]:
        """One Scores per prompt, in order, each as ``score(prompt, continuations)`` would give
        (within float rounding): ``batch_texts`` prompts per forward pass, their common prefix
        run once (``socialens.llm.hf_scoring``). A batch that fails is scored one prompt at a
        time, so one bad prompt gets the error and the others their scores."""
        start = time.perf_counter()
        try:
            requests = [self._token_request(prompt, continuations) for prompt in prompts]
            self.scorer.batch_texts = self.options.batch_texts
            with torch_threads(self.options.threads):
                values = self.scorer.score(requests)
        except Exception:  # noqa: BLE001 - each prompt then gets its own result or error
            log.exception("hf batched scoring failed; scoring the %d prompts one at a time", len(prompts))
            return [self.score(prompt, continuations) for prompt in prompts]
        latency = (time.perf_counter() - start) / max(len(prompts), 1)
        return [
            Scores(
                logprobs=logprobs,
                tokens_in=len(request.prompt_ids),
                continuation_tokens=[
                    len(s) - b for s, b in zip(request.sequences, request.starts, strict=True)
                ],
                latency_s=latency,
            )
            for request, logprobs in zip(requests, values, strict=True)
        ]

    def _token_request(self, prompt: Messages, continuations: list[str]) -> TokenRequest:
        text = self.render(prompt)
        prompt_ids = self._encode(text)  # not truncated: scoring needs the whole prompt
        pairs = [self._tail_ids(text, prompt_ids, self.answer_prefix + c) for c in continuations]
        return TokenRequest(prompt_ids, [full for full, _ in pairs], [common for _, common in pairs])

    def close(self) -> None:
        self.model = None
