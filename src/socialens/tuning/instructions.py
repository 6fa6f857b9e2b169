"""Instruction sets in the LlamaLens style: per dataset, N paraphrased instructions; one sampled
per training example; chat-format records (system / user / assistant) in JSONL.

The chat-record shape below is the contract between instruction building, LoRA training
(``tuning/lora.py``) and evaluation of a tuned model: training and evaluation render the same
messages, so a tuned model is asked exactly what it was taught.
"""

from __future__ import annotations

DEFAULT_SYSTEM = (
    "You are an expert annotator of news and social-media text. "
    "Follow the instruction and answer with the label only."
)
ANSWER_PREFIX = "Label: "


def chat_messages(
    instruction: str, text: str, label: str | None = None, system: str | None = DEFAULT_SYSTEM
) -> list[dict[str, str]]:
    """The messages for one example; the assistant turn ("Label: <label>") only when ``label`` is given.

    A JSONL training record is ``{"id", "dataset", "language", "task", "label",
    "instruction_index", "messages": chat_messages(...)}``, which TRL's SFTTrainer and
    LLaMA-Factory (sharegpt/openai format) read as they are."""
    messages = []
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": f"{instruction.strip()}\n\nText: {text}"})
    if label is not None:
        messages.append({"role": "assistant", "content": f"{ANSWER_PREFIX}{label}"})
    return messages
