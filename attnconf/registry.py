"""The implementation registry: one adapter interface, a capability manifest, three ways to register.

An implementation is a canonical-layout function (see ``layouts.py``) plus a ``Capabilities`` manifest. It
registers by being imported: a module dropped into ``impls/``, a ``module:object`` named on the command line
(``--impl-module``), or a package entry point in the group ``attnconf.implementations``.
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.metadata
import inspect
import pkgutil
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

import torch

from .capabilities import Capabilities
from .layouts import to_canonical
from .varlen import varlen_through_dense

ENTRY_POINT_GROUP = "attnconf.implementations"


Availability = Callable[[], "str | None"]


@dataclass
class Implementation:
    """One registered attention implementation.

    ``forward(q, k, v, *, key_padding_mask=None, causal=None, scale=None)`` works in the canonical layout; the
    optional features' options (``window``, ``softcap``, ``alibi_slopes``, ``sink``, ``return_lse``) are passed only
    when a test uses them, which it does only where the manifest declares the feature.
    ``varlen_forward(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, *, causal=None,
    scale=None)`` is the packed API; when absent and ``varlen`` is declared, packed batches go through the
    shared pad/unpad adapter. ``available()`` returns None, or the reason the implementation cannot run here.
    ``expected_failures`` maps a contract ID or a test-id glob to the documented reason it fails.
    """

    name: str
    forward: Callable[..., torch.Tensor]
    capabilities: Capabilities
    varlen_forward: Callable[..., torch.Tensor] | None = None
    kvcache_forward: Callable[..., torch.Tensor] | None = None
    available: Availability = lambda: None
    expected_failures: Mapping[str, str] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        # head dim 64 is a contract (HEAD-1) an implementation fails in the matrix, not a condition to register
        if isinstance(self.available, bool):  # available=True/False instead of a function
            flag = self.available
            self.available = lambda: None if flag else "available=False"
        if not self.name or any(c.isspace() for c in self.name):
            raise ValueError(f"implementation name {self.name!r} must be non-empty without spaces")

    def __call__(self, q, k, v, *, key_padding_mask=None, causal=None, scale=None, window=None, softcap=None,
                 alibi_slopes=None, sink=None, return_lse=False):
        """The canonical call; with ``return_lse`` the implementation returns ``(out, lse)``."""
        return self.forward(q, k, v, **_in_use(key_padding_mask=key_padding_mask, causal=causal, scale=scale,
                                               window=window, softcap=softcap, alibi_slopes=alibi_slopes, sink=sink,
                                               return_lse=return_lse or None))

    def varlen(
        self, q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, *, causal=None, scale=None,
        window=None,
    ) -> torch.Tensor:
        options = _in_use(causal=causal, scale=scale, window=window)
        if self.varlen_forward is not None:
            return self.varlen_forward(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, **options)
        return varlen_through_dense(
            self.forward, q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, **options
        )

    def kvcache(self, q, k_cache, v_cache, cache_seqlens, *, block_table=None, causal=None, scale=None):
        """Decoding against a KV cache, canonical layout: q [B, Sq, Hq, D]; k_cache, v_cache [B, S_max, Hkv, D], or
        pages [num_pages, page_size, Hkv, D] with ``block_table`` int32 [B, pages per sequence]; ``cache_seqlens``
        int32 [B]. There is no adapter: only an implementation's own ``kvcache_forward`` is judged."""
        if self.kvcache_forward is None:
            raise NotImplementedError(f"{self.name} has no kvcache_forward")
        return self.kvcache_forward(q, k_cache, v_cache, cache_seqlens,
                                    **_in_use(block_table=block_table, causal=causal, scale=scale))

    def unavailable_reason(self) -> str | None:
        """None when the implementation can run here, else why not. ``available()`` may return None or a reason,
        or a bool (``torch.cuda.is_available`` works as it is: True means available)."""
        try:
            result = self.available()
        except Exception as exc:  # an availability probe that crashes means "not available", with the cause
            return f"availability check failed: {type(exc).__name__}: {exc}"
        if result is True or result is None:
            return None
        if result is False:
            return f"its availability check {getattr(self.available, '__name__', 'available')}() returned False"
        return str(result)

    def __repr__(self) -> str:
        return f"Implementation({self.name!r})"


def _in_use(**options):
    return {name: value for name, value in options.items() if value is not None}


_REGISTRY: dict[str, Implementation] = {}


_ORIGINS: dict[str, str] = {}  # name -> where it was registered from (a module, an entry point)


def register(impl: Implementation, origin: str | None = None) -> Implementation:
    """Add an implementation; registering the same object twice is harmless, a second one under a taken name is not."""
    existing = _REGISTRY.get(impl.name)
    origin = origin or _caller_module()
    if existing is not None and existing is not impl:
        raise ValueError(
            f"an implementation named {impl.name!r} is already registered by {_ORIGINS.get(impl.name, '?')} "
            f"({existing.description}); {origin} registers another one under that name"
        )
    _REGISTRY[impl.name] = impl
    _ORIGINS.setdefault(impl.name, origin)
    return impl


def _caller_module() -> str:
    """The first module outside this one on the call stack (frames only: no source lines read at start-up)."""
    frame = inspect.currentframe()
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back
    return f"module {frame.f_globals.get('__name__', '?')}" if frame is not None else "?"


def origin(name: str) -> str:
    """Where ``name`` was registered from: a module (``attnconf.impls.*`` for the built-ins), or an entry point."""
    return _ORIGINS.get(name, "?")


def is_builtin(name: str) -> bool:
    return origin(name).startswith("module attnconf.impls.")


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)
    _ORIGINS.pop(name, None)


def implementation(
    name: str,
    *,
    capabilities: Capabilities,
    layout: str = "bshd",
    varlen_forward: Callable[..., torch.Tensor] | None = None,
    kvcache_forward: Callable[..., torch.Tensor] | None = None,
    available: "Availability | bool | None" = None,
    expected_failures: Mapping[str, str] | None = None,
    description: str = "",
) -> Callable[[Callable[..., torch.Tensor]], Callable[..., torch.Tensor]]:
    """Decorator: register the decorated function, written in ``layout``, as an implementation.

    ``varlen_forward``, the packed API, is written in the same layout (packed: "bshd" is q [T, H, D], "bhsd"
    [H, T, D], "bsd" [T, H·D]). The function itself is returned unchanged (still callable on its own layout's tensors); the registered
    ``Implementation`` is its attribute ``attnconf_implementation``, and ``--impl-module pkg.mod:fn`` accepts it.
    """

    def decorate(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        impl = register(
            Implementation(
                name=name,
                forward=to_canonical(fn, layout),
                capabilities=capabilities,
                varlen_forward=None if varlen_forward is None else to_canonical(varlen_forward, layout),
                kvcache_forward=kvcache_forward,  # canonical layout (a cache has no other layout adapter)
                available=(lambda: None) if available is None else available,
                expected_failures=dict(expected_failures or {}),
                description=description or _first_line(fn.__doc__),
            )
        )
        fn.attnconf_implementation = impl
        return fn

    return decorate


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else ""


def registered() -> dict[str, Implementation]:
    return dict(_REGISTRY)


# ---- discovery -------------------------------------------------------------------------------------------------


def load_builtin() -> None:
    """Import every module in ``impls/``: each registers what it defines."""
    for info in sorted(pkgutil.iter_modules(importlib.import_module("attnconf.impls").__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"attnconf.impls.{info.name}")


def load_object(spec: str) -> list[Implementation]:
    """Import ``module:object`` (or a bare module) and register what it names."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 (an import error, or any error the module raises when imported)
        raise ValueError(
            f"--impl-module {spec!r}: cannot import {module_name!r} ({type(exc).__name__}: {exc}); the module must "
            "be importable from where pytest runs (installed, or on PYTHONPATH)"
        ) from None
    if not attr:
        return []
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise ValueError(f"--impl-module {spec!r}: module {module_name!r} has no attribute {attr!r}") from None
    return _register_object(obj, spec)


def _register_object(obj, origin: str) -> list[Implementation]:
    obj = getattr(obj, "attnconf_implementation", obj)  # a function decorated with @implementation
    if callable(obj) and not isinstance(obj, Implementation):
        if _required_parameters(obj):
            raise ValueError(
                f"{origin}: {getattr(obj, '__name__', obj)!r} takes arguments, so it is not a factory; expected an "
                "Implementation (e.g. the function decorated with attnconf.implementation), a list of them, or a "
                "function of no arguments returning them"
            )
        try:
            obj = obj()  # a factory returning implementations
        except Exception as exc:  # noqa: BLE001
            raise ValueError(f"{origin}: the factory raised {type(exc).__name__}: {exc}") from None
    items: Iterable = [obj] if isinstance(obj, Implementation) else obj
    out = []
    for item in items:
        item = getattr(item, "attnconf_implementation", item)
        if not isinstance(item, Implementation):
            raise ValueError(f"{origin}: expected Implementation objects, got {type(item).__name__}")
        out.append(register(item, origin))
    return out


def _required_parameters(fn) -> list[str]:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def load_entry_points() -> list[Implementation]:
    """Register what installed packages advertise in the ``attnconf.implementations`` entry-point group.

    An entry point that fails to load (an import error, a factory that raises) does not break the run: it is
    registered as an unavailable implementation under its entry-point name, whose skip reason is the cause.
    """
    out = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        origin = f"entry point {ep.name} ({ep.value})"
        try:
            out.extend(_register_object(ep.load(), origin))
        except Exception as exc:  # noqa: BLE001 (any failure of a third party's code)
            if ep.name in _REGISTRY:
                raise ValueError(f"{origin} failed ({type(exc).__name__}: {exc}), and its name is taken by "
                                 f"{_ORIGINS.get(ep.name)}") from None
            out.append(register(_broken(ep.name, origin, exc), origin))
    return out


def _broken(name: str, origin: str, exc: Exception) -> Implementation:
    reason = f"{origin} failed to load: {type(exc).__name__}: {exc}"

    def unusable(*args, **kwargs):
        raise RuntimeError(reason)

    return Implementation(name=name, forward=unusable, capabilities=Capabilities(devices={"cpu", "cuda"}),
                          available=lambda: reason, description=reason)


def select(patterns: Iterable[str] | None) -> list[Implementation]:
    """Registered implementations whose names match any of the glob patterns (all when none given)."""
    patterns = [p for p in (patterns or []) if p]
    impls = sorted(_REGISTRY.values(), key=lambda i: i.name)
    if not patterns:
        return impls
    chosen = [i for i in impls if any(fnmatch.fnmatchcase(i.name, p) for p in patterns)]
    unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(i.name, p) for i in impls)]
    if unmatched:
        raise ValueError(
            f"--impl {', '.join(unmatched)} matches no registered implementation; registered: "
            f"{', '.join(i.name for i in impls)}"
        )
    return chosen
