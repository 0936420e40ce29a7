"""Strict, typed ``--model_args`` for the ``dllm`` lm-eval model.

Accepted keys are the union of three groups, and nothing else:

* loader / run keys (:data:`LOADER_KEYS`): ``pretrained``, ``dtype``, ``device``,
  ``batch_size``, ... ;
* every decoding option of the engine, read from ``dataclasses.fields(DecodeConfig)`` (so a new
  engine option is accepted here without an edit);
* loglikelihood keys (:data:`LOGLIKELIHOOD_KEYS`): ``mc_num``, ``mc_batch_size``, ... .

Values arrive as strings (``--model_args a=1,b=x``), as JSON/literal values, or as Python
objects (``simple_evaluate(model_args={...})``); each is converted to the key's type. An unknown
key raises ``ValueError`` listing the accepted keys with a "did you mean"; a bad value raises
``ValueError`` naming the key, the value and what is accepted. Decoding options are finally
checked together by ``DecodeConfig`` (after the per-family defaults of :data:`FAMILY_DEFAULTS`
are applied, see ``dllm_eval.harness.lm``). This module never imports torch.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Union

DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass(frozen=True)
class KeySpec:
    """One accepted model_args key: its type, default and one line of documentation."""

    name: str
    type: Any
    default: Any
    doc: str


LOADER_KEYS: tuple[KeySpec, ...] = (
    KeySpec("pretrained", str, None, "checkpoint folder or Hugging Face id (required)"),
    KeySpec("dtype", Literal[DTYPES], "auto", "weights dtype"),
    KeySpec("device", str | None, None, "cpu | cuda | cuda:N | mps; default cuda if available (per-process device under accelerate)"),
    KeySpec("batch_size", int | str, 1, "generation batch size: an integer >= 1, 'auto' or 'auto:N'"),
    KeySpec("max_batch_size", int, 64, "upper bound of batch_size=auto"),
    KeySpec("tokenizer", str | None, None, "tokenizer folder/id if the checkpoint has none"),
    KeySpec("max_length", int | None, None, "context window in tokens (default: the model config's); prompts are left-truncated to fit"),
    KeySpec("trust_remote_code", bool, False, "accepted for command-line compatibility with hf; the native model classes need no remote code"),
    KeySpec("request_cache", str | None, None, "folder of the resumable request cache keyed by model identity + every option (None = off)"),
)

LOGLIKELIHOOD_KEYS: tuple[KeySpec, ...] = (
    KeySpec("mc_num", int, 128, "Monte Carlo samples of the ELBO per (context, continuation)"),
    KeySpec("mc_batch_size", int, 32, "rows per forward when estimating the ELBO"),
    KeySpec("ll_cfg_scale", float, 0.0, "classifier-free guidance scale of the loglikelihood forward (0 = off)"),
    KeySpec("greedy_check", bool, True, "compute is_greedy by greedy unmasking of the continuation (False: is_greedy is always False)"),
)

# Per-family defaults of the decoding options (explicit model_args and task gen_kwargs win).
# "gen_length" comes from the request's max_gen_toks; "steps": "gen_length" means one token
# per step; "block_length": "block_size" means the model config's block size.
FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "llada": {"sampler": "confidence", "schedule": "even", "block_length": 32,
              "steps": "gen_length", "stop_on_eos": True},
    "dream": {"sampler": "entropy", "schedule": "linspace", "block_length": None,
              "steps": "gen_length", "eps": 1e-3},
    "sdar": {"sampler": "confidence", "schedule": "block_even", "block_length": "block_size",
             "steps_per_block": "block_length", "stop_on_eos": True},
}
DEFAULT_GEN_LENGTH = 256  # when neither model_args nor the request give a length


def decode_config_class() -> type:
    from dllm_eval.samplers.config import DecodeConfig

    return DecodeConfig


def decode_keys() -> tuple[KeySpec, ...]:
    """One :class:`KeySpec` per ``DecodeConfig`` field (type from its annotation)."""
    cls = decode_config_class()
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.name.startswith("_"):
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        out.append(KeySpec(f.name, hints.get(f.name, Any), default, "decoding option (DecodeConfig)"))
    return tuple(out)


def accepted_keys() -> dict[str, KeySpec]:
    """Every accepted key, loader keys first."""
    specs = (*LOADER_KEYS, *decode_keys(), *LOGLIKELIHOOD_KEYS)
    return {s.name: s for s in specs}


@dataclass(frozen=True)
class ModelArgs:
    """Validated model_args: loader keys, explicitly given decode options, loglikelihood keys."""

    pretrained: str
    dtype: str = "auto"
    device: str | None = None
    batch_size: int | str = 1
    max_batch_size: int = 64
    tokenizer: str | None = None
    max_length: int | None = None
    trust_remote_code: bool = False
    request_cache: str | None = None
    mc_num: int = 128
    mc_batch_size: int = 32
    ll_cfg_scale: float = 0.0
    greedy_check: bool = True
    decode: dict[str, Any] = field(default_factory=dict)
    """Only the decoding options the user set (typed); defaults are resolved per family."""


def parse_model_args(raw: Mapping[str, Any] | str | None, **extra: Any) -> ModelArgs:
    """Validate and type ``raw`` (a dict or an lm-eval ``"k=v,k2=v2"`` string) plus ``extra``.

    ``extra`` entries that are ``None`` are ignored (lm-eval passes ``batch_size=None`` etc.).
    """
    items: dict[str, Any] = {}
    if isinstance(raw, str):
        items.update(parse_arg_string(raw))
    elif raw is not None:
        items.update(raw)
    items.update({k: v for k, v in extra.items() if v is not None})
    specs = accepted_keys()
    for key in items:
        if key not in specs:
            raise unknown_key_error(key, specs)
    if items.get("pretrained") in (None, ""):
        raise ValueError("model_args: pretrained=<checkpoint folder or hub id> is required")
    typed = {k: coerce(k, v, specs[k].type) for k, v in items.items()}
    _check_values(typed)
    decode_names = {s.name for s in decode_keys()}
    decode = {k: v for k, v in typed.items() if k in decode_names}
    rest = {k: v for k, v in typed.items() if k not in decode_names}
    return ModelArgs(**rest, decode=decode)


def unknown_key_error(key: str, specs: Mapping[str, KeySpec]) -> ValueError:
    close = difflib.get_close_matches(key, list(specs), n=3, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ValueError(
        f"unknown model_args key {key!r}.{hint} Accepted keys: {', '.join(specs)}"
    )


def _check_values(typed: Mapping[str, Any]) -> None:
    bs = typed.get("batch_size")
    if bs is not None:
        parse_batch_size(bs)
    for name in ("max_batch_size", "mc_num", "mc_batch_size"):
        if name in typed and typed[name] < 1:
            raise ValueError(f"model_args {name}={typed[name]!r} is invalid; accepted: an integer >= 1")
    if typed.get("max_length") is not None and typed["max_length"] < 2:
        raise ValueError(f"model_args max_length={typed['max_length']!r} is invalid; accepted: an integer >= 2 or None")
    if "ll_cfg_scale" in typed and typed["ll_cfg_scale"] < 0:
        raise ValueError(f"model_args ll_cfg_scale={typed['ll_cfg_scale']!r} is invalid; accepted: a number >= 0")
    dev = typed.get("device")
    if dev is not None and not re.fullmatch(r"(cpu|mps|cuda|xpu|npu)(:\d+)?", dev):
        raise ValueError(f"model_args device={dev!r} is invalid; accepted: cpu, cuda, cuda:N, mps, xpu, npu")


def parse_batch_size(value: int | str) -> tuple[str, int]:
    """``("fixed", n)`` or ``("auto", recompute_times)``; bad values raise ValueError."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value >= 1:
            return ("fixed", value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if text.isdigit() and int(text) >= 1:
            return ("fixed", int(text))
        m = re.fullmatch(r"auto(?::(\d+))?", text)
        if m:
            return ("auto", int(m.group(1) or 1))
    raise ValueError(f"model_args batch_size={value!r} is invalid; accepted: an integer >= 1, 'auto' or 'auto:N'")


# ----------------------------------------------------------------------------- type coercion


def coerce(name: str, value: Any, tp: Any) -> Any:
    """Convert ``value`` to the annotation ``tp`` (str/int/float/bool, Literal, X | None,
    unions, tuple[int, ...]); raise ValueError naming ``name``, ``value`` and what is accepted."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if type(None) in args and _is_none(value):
            return None
        errors = []
        # str last: it accepts anything textual
        for arg in sorted((a for a in args if a is not type(None)), key=lambda a: a is str):
            try:
                return coerce(name, value, arg)
            except ValueError as exc:
                errors.append(exc)
        accepted = " or ".join(_describe(a) for a in args)
        raise ValueError(f"model_args {name}={value!r} is invalid; accepted: {accepted}")
    if origin is Literal:
        choices = typing.get_args(tp)
        text = value.strip() if isinstance(value, str) else value
        if text in choices:
            return text
        close = difflib.get_close_matches(str(text), [str(c) for c in choices], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"model_args {name}={value!r} is invalid; accepted: {', '.join(map(str, choices))}{hint}")
    if origin is tuple:
        inner = typing.get_args(tp)[0] if typing.get_args(tp) else Any
        if isinstance(value, str):
            parts = [p for p in re.split(r"[;\s|]+", value.strip().strip("()[]")) if p]
        elif isinstance(value, (list, tuple)):
            parts = list(value)
        else:
            parts = [value]
        try:
            return tuple(coerce(name, p, inner) for p in parts)
        except ValueError:
            raise ValueError(
                f"model_args {name}={value!r} is invalid; accepted: {_describe(inner)} values "
                "separated by ';' (or a list)"
            ) from None
    if tp in (bool, int, float):
        from dllm_eval.samplers.config import to_bool, to_float, to_int

        return {bool: to_bool, int: to_int, float: to_float}[tp](name, value, "model_args")
    if tp is str:
        if isinstance(value, str):
            return value.strip()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ValueError(f"model_args {name}={value!r} is invalid; accepted: a string")
    return value


def _is_none(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", ""))


def _describe(tp: Any) -> str:
    if tp is type(None):
        return "None"
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(tp)))
    if typing.get_origin(tp) is tuple:
        return "a ;-separated list"
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string"}.get(tp, str(tp))


def parse_arg_string(text: str) -> dict[str, Any]:
    """``"k=v,k2=v2"`` -> ``{"k": "v", "k2": "v2"}`` (values stay strings; typed later)."""
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise ValueError(f"model_args entry {part!r} is invalid; accepted: key=value pairs separated by commas")
        key, _, value = part.partition("=")
        out[key.strip()] = value.strip()
    return out


def describe_keys() -> str:
    """A plain-text table of every accepted key (for --help style messages and the README)."""
    rows = [f"{s.name:<24} {_describe_type(s.type):<28} {s.default!r:<12} {s.doc}" for s in accepted_keys().values()]
    return "\n".join(rows)


def _describe_type(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " | ".join(_describe_type(a) for a in typing.get_args(tp))
    if origin is Literal:
        return "|".join(map(str, typing.get_args(tp)))
    if origin is tuple:
        return "tuple[int]"
    return getattr(tp, "__name__", str(tp))
