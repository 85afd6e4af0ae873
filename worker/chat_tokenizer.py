"""A chat model's tokenizer without transformers: ``tokenizer.json`` + its chat template.

The ONNX runtime and the upstream backend's usage counting need to turn
messages into token ids, count tokens and decode them, and nothing else. The
Rust ``tokenizers`` library does the tokenizing (a few ms to import, against
seconds for transformers), and the chat template is rendered the way
transformers renders it: a sandboxed jinja2 environment with ``trim_blocks``
and ``lstrip_blocks``, ``raise_exception``, a ``tojson`` that keeps non-ASCII
text, and the special tokens (``bos_token``, ``eos_token`` ...) as variables.
The rendered text is tokenized without adding special tokens, as transformers
does, so the ids match ``apply_chat_template(..., tokenize=True)``.

A folder is usable when it has ``tokenizer.json``; the template comes from
``chat_template.jinja`` or ``tokenizer_config.json``'s ``chat_template``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SPECIAL_TOKEN_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token")


class TemplateError(ValueError):
    """The chat template refused the messages (e.g. roles that do not alternate)."""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _token_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def _ids(value: Any) -> set[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return {value}
    if isinstance(value, (list, tuple)):
        return {v for v in value if isinstance(v, int) and not isinstance(v, bool)}
    return set()


def _compile(template: str) -> Any:
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None, sort_keys: bool = False) -> str:
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt: str) -> str:
        from datetime import datetime

        return datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env.from_string(template)


class ChatTokenizer:
    """Encode chats, count and decode tokens for one model folder."""

    def __init__(self, folder: Path) -> None:
        from tokenizers import Tokenizer

        folder = Path(folder)
        self.folder = folder
        self._tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        config = _read_json(folder / "tokenizer_config.json")
        self.special_tokens: dict[str, str] = {}
        for key in SPECIAL_TOKEN_KEYS:
            text = _token_text(config.get(key))
            if text is not None:
                self.special_tokens[key] = text
        template = config.get("chat_template")
        if isinstance(template, list):  # named templates: the default one
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
            template = named.get("default")
        jinja_file = folder / "chat_template.jinja"
        if jinja_file.is_file():
            template = jinja_file.read_text(encoding="utf-8")
        self.chat_template: str | None = template if isinstance(template, str) and template else None
        self._compiled: Any = None
        limit = config.get("model_max_length")
        self.model_max_length = limit if isinstance(limit, int) and 0 < limit < 10_000_000 else None
        self.special_ids = {i for i, t in self._tok.get_added_tokens_decoder().items() if t.special}
        self.special_ids.update(
            i for i in (self.token_id(name) for name in self.special_tokens.values()) if i is not None
        )
        self.eos_ids = self._end_ids(config)

    @classmethod
    def usable(cls, folder: Path) -> bool:
        return (Path(folder) / "tokenizer.json").is_file()

    def token_id(self, text: str) -> int | None:
        value = self._tok.token_to_id(text)
        return value if isinstance(value, int) else None

    def _end_ids(self, config: dict[str, Any]) -> set[int]:
        """Every id that ends an answer: the tokenizer's eos and the model's declared eos ids."""
        ids: set[int] = set()
        eos = self.special_tokens.get("eos_token")
        if eos is not None and (found := self.token_id(eos)) is not None:
            ids.add(found)
        for name in ("generation_config.json", "config.json"):
            ids |= _ids(_read_json(self.folder / name).get("eos_token_id"))
        genai = _read_json(self.folder / "genai_config.json").get("model", {})
        if isinstance(genai, dict):
            ids |= _ids(genai.get("eos_token_id"))
        return ids

    # --- encoding -------------------------------------------------------

    def render(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """The chat as the model reads it (the template applied), or the turns joined if it has none."""
        if self.chat_template is None:
            return "\n\n".join(m["content"] for m in messages)
        if self._compiled is None:
            self._compiled = _compile(self.chat_template)
        import jinja2

        try:
            return str(
                self._compiled.render(
                    messages=messages,
                    tools=None,
                    documents=None,
                    add_generation_prompt=add_generation_prompt,
                    **self.special_tokens,
                )
            )
        except jinja2.TemplateError as exc:
            raise TemplateError(str(exc)) from None

    def encode_chat(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> list[int]:
        return self.encode(self.render(messages, add_generation_prompt))

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def count(self, text: str) -> int:
        return len(self._tok.encode(text, add_special_tokens=False).ids) if text else 0

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        return str(self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens))


def load_chat_tokenizer(source: str) -> ChatTokenizer:
    """The tokenizer of a model given as a folder, an ONNX build, a ``.gguf`` file or a hub id.

    A folder with ``tokenizer.json`` is read as it is. A GGUF file or a hub id
    goes through transformers once and the result is cached under the data
    dir (``models/tokenizers/``), so later loads are instant. Raises
    ValueError naming the source when nothing usable is found.
    """
    import hashlib

    path = Path(source).expanduser()
    if path.is_dir() and ChatTokenizer.usable(path):
        return ChatTokenizer(path)
    if not path.exists() and (source.startswith(("/", ".", "~")) or source.endswith(".gguf")):
        raise ValueError(f"cannot load a tokenizer from {source}: there is no such file or folder")
    from worker.models import gguf_parsed_once, models_dir

    stamp = [str(path.resolve()), path.stat().st_size, path.stat().st_mtime_ns] if path.exists() else [source]
    key = hashlib.sha256(json.dumps(stamp).encode()).hexdigest()[:12]
    cache = models_dir() / "tokenizers" / f"{path.stem if path.exists() else source.rsplit('/', 1)[-1]}-{key}"
    if not ChatTokenizer.usable(cache):
        try:
            from transformers import AutoTokenizer

            with gguf_parsed_once():
                if path.is_file() and path.suffix == ".gguf":
                    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
                else:
                    tokenizer = AutoTokenizer.from_pretrained(source)
        except (OSError, ValueError, ImportError) as exc:
            raise ValueError(f"cannot load a tokenizer from {source}: {exc}") from None
        staging = cache.with_name(cache.name + f".{os.getpid()}.partial")
        tokenizer.save_pretrained(staging)
        if not ChatTokenizer.usable(staging):
            raise ValueError(f"the tokenizer of {source} has no fast (tokenizer.json) form")
        try:
            staging.rename(cache)
        except OSError:  # another process cached it first; keep theirs
            import shutil

            shutil.rmtree(staging, ignore_errors=True)
    return ChatTokenizer(cache)
