"""Targets: the `Target` contract and the registry (`registry`), the helpers users and
built-ins declare targets with (`declare`: `target`, `define`; their parts, tensor specs and
kernel or oracle variants, in `specs`), code references (`references`) and the built-in
targets (`builtin`)."""

from kfuzz.targets.registry import (
    DEFAULT_MAX_NUMEL,
    ENTRY_POINT_GROUP,
    OutputSpec,
    Target,
    Variant,
    all_targets,
    callable_name,
    get,
    given_plugins,
    import_callable,
    is_local,
    is_reference,
    load_plugin,
    load_plugins,
    load_recorded_plugins,
    loaded_plugins,
    names,
    plugins_for,
    register,
    resolve,
    stand_in,
)

__all__ = ["DEFAULT_MAX_NUMEL", "ENTRY_POINT_GROUP", "OutputSpec", "Target", "Variant",
           "all_targets", "callable_name", "get", "given_plugins", "import_callable", "is_local",
           "is_reference", "load_plugin", "load_plugins", "load_recorded_plugins",
           "loaded_plugins", "names", "plugins_for", "register", "resolve", "stand_in"]
