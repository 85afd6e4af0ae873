"""Tiny random chat models built offline for tests.

No machine here reaches a model hub, so tests that need a causal LM build one:
a Llama-config model (hidden 64, 2 layers) with random but seeded weights and a
word-level tokenizer trained by `tokenizers` on a small corpus, so that decoded
output is readable words. The tokenizer carries a chat template, so the chat
backend exercises the same `apply_chat_template` path as a real instruct model.

`build_tiny_chat_model(dest)` writes both with `save_pretrained`; the result
loads with `AutoModelForCausalLM.from_pretrained(dest)` like any hub model.
`tiny_chat_model_path(tmp_path_factory)` builds it once per test session.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Words the tokenizer knows; random weights pick among them, so output reads as
# (nonsense) English instead of byte soup.
_CORPUS = (
    "the realm answers every intent a person types or says . "
    "computer tell me a joke about robots and neon mountains under a purple sky . "
    "workers serve models and earn tokens while the broker queues each request fairly . "
    "hello world what is in this picture imagine a cat sitting on a red chair . "
    "one two three four five six seven eight nine ten . "
    "yes no maybe sure thanks please sorry good bad fast slow big small ! ?"
)

_SPECIALS = ["<unk>", "<pad>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]

# Jinja, the same shape as real instruct templates: one turn per message, then
# the assistant header when a generation prompt is wanted.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|> {{ message['content'] }} <|end|> "
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)

SEED = 1234
HIDDEN = 64
LAYERS = 2


def _build_tokenizer() -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=_SPECIALS, min_frequency=1)
    tok.train_from_iterator([_CORPUS], trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        additional_special_tokens=["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"],
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "left"
    return fast


def build_tiny_chat_model(dest: Path, *, seed: int = SEED) -> Path:
    """Build and save a tiny random Llama chat model and its tokenizer at ``dest``.

    Deterministic: the same seed gives byte-identical weights. Returns ``dest``.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tokenizer = _build_tokenizer()
    end_id = tokenizer.convert_tokens_to_ids("<|end|>")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        intermediate_size=128,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        # A wide init spreads the logits, so greedy picks are not near-ties
        # that float noise between batch shapes could flip.
        initializer_range=0.3,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=[tokenizer.eos_token_id, end_id],
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, end_id]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return dest


def tiny_chat_model_path(tmp_path_factory: Any) -> Path:
    """The tiny chat model for this test session, built on first use.

    Pass pytest's ``tmp_path_factory``; the model lands in one session-wide
    basetemp folder so every test module reuses the same files.
    """
    root = Path(tmp_path_factory.getbasetemp()) / "tiny-chat-model"
    if not root.exists():
        # Build beside, then rename: a half-built folder is never seen as done.
        partial = root.with_name(root.name + ".partial")
        build_tiny_chat_model(partial)
        partial.rename(root)
    return root


def build_tiny_gpt2_model(dest: Path, *, seed: int = SEED) -> Path:
    """A tiny random GPT-2 (an architecture the ONNX builder does not convert) at ``dest``."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tokenizer = _build_tokenizer()
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=HIDDEN,
        n_layer=LAYERS,
        n_head=4,
        n_positions=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    GPT2LMHeadModel(config).eval().save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return dest
