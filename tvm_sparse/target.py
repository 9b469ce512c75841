"""Turn the target strings TVM users type into ``tvm.target.Target`` objects.

TVM 0.27 only accepts targets as JSON dicts (``{"kind": "llvm", "mtriple": ...}``); the strings of
every TVM tutorial and paper (``"llvm -mtriple=aarch64 -mattr=+neon"``, ``"opencl -device=mali"``)
are rejected. ``parse_target`` accepts both, plus dicts and ``Target`` objects, and names the bad
part of a string that cannot be a target.
"""

import os
import platform
import shlex

from tvm.target import Target, TargetKind
from tvm.target import codegen

#: The cross compiler for aarch64 Linux (Debian package g++-aarch64-linux-gnu).
AARCH64_LINUX_CXX = "aarch64-linux-gnu-g++"

#: Target kinds that tvm_sparse compiles for.
SUPPORTED_KINDS = ("llvm", "opencl")

#: GPUs of phones, whose OpenCL programs run beside an aarch64 CPU host.
PHONE_GPUS = ("mali", "adreno")

#: The host of a phone GPU target when none is given.
PHONE_HOST = {"kind": "llvm", "mtriple": "aarch64-linux-gnu"}

# Triples given by architecture alone, as in "llvm -mtriple=aarch64", and their full form.
_SHORT_TRIPLES = {"aarch64": "aarch64-linux-gnu", "arm64": "aarch64-linux-gnu"}


class TargetError(ValueError):
    """A target that cannot be parsed or is not supported; the message names the bad part."""


def parse_target(target, host=None):
    """Parse a target given as a string, a dict or a ``tvm.target.Target``.

    Parameters
    ----------
    target : str or dict or tvm.target.Target
        ``"llvm"``, ``"llvm -mtriple=aarch64-linux-gnu -mattr=+neon"``,
        ``"llvm -mtriple=aarch64-linux-android -mcpu=cortex-a76"``, ``"opencl -device=mali"``,
        ``{"kind": "llvm", "mtriple": "aarch64-linux-gnu"}``, ... A triple given by its
        architecture alone (``-mtriple=aarch64``) means Linux (``aarch64-linux-gnu``); a CPU target
        for this machine without ``-mcpu`` gets this machine's CPU.
    host : str or dict or tvm.target.Target, optional
        The host target of a GPU target, in the same forms. ``opencl -device=mali`` and
        ``-device=adreno`` default to an aarch64 Linux host (a phone).

    Returns
    -------
    tvm.target.Target

    Raises
    ------
    TargetError
        If the string has an unknown kind or option, a value of the wrong type, an unknown CPU,
        or a kind tvm_sparse does not compile for.
    """
    config = _to_config(target)
    if host is not None:
        config["host"] = _to_config(host)
    kind = config["kind"]
    if kind not in SUPPORTED_KINDS:
        raise TargetError(f"target kind {kind!r} is not supported by tvm_sparse; use one of {SUPPORTED_KINDS}")
    if kind == "opencl" and config.get("device") in PHONE_GPUS:
        config.setdefault("host", dict(PHONE_HOST))
    for part in (config, config.get("host")):
        if isinstance(part, dict) and part.get("mtriple") in _SHORT_TRIPLES:
            part["mtriple"] = _SHORT_TRIPLES[part["mtriple"]]
        if isinstance(part, dict) and part["kind"] == "llvm":
            _default_to_this_cpu(part)
    try:
        parsed = Target(config)
    except (ValueError, TypeError, RuntimeError) as error:
        raise TargetError(f"invalid target {_describe(target)}: {error}") from error
    for cpu_target in (parsed, parsed.host):
        if cpu_target is not None and cpu_target.kind.name == "llvm":
            _check_cpu(cpu_target, target)
    return parsed


def _default_to_this_cpu(config):
    """Give a target for this machine (no triple, or this machine's) this machine's CPU as ``mcpu``.

    Without ``mcpu`` LLVM generates code for a generic CPU of the triple: on this AVX-512 machine
    dense ResNet-18 ran 4x slower (149 ms against 37 ms) with plain ``llvm``.
    """
    if "mcpu" not in config and config.get("mtriple", codegen.llvm_get_system_triple()) == \
            codegen.llvm_get_system_triple():
        config["mcpu"] = codegen.llvm_get_system_cpu()


def _to_config(target):
    """Return the JSON-dict form of a target given as a string, a dict or a Target."""
    if isinstance(target, Target):
        return dict(_target_config(target))
    if isinstance(target, dict):
        if "kind" not in target:
            raise TargetError(f"target dict {target!r} has no 'kind'")
        return {key: (_to_config(value) if key == "host" else value) for key, value in target.items()}
    if isinstance(target, str):
        return _parse_string(target)
    raise TargetError(f"a target is a string, a dict or a tvm.target.Target, not {type(target).__name__}")


def _target_config(target):
    config = {"kind": target.kind.name}
    config.update({key: value for key, value in target.attrs.items()})
    if target.host is not None:
        config["host"] = _target_config(target.host)
    return {key: value for key, value in config.items() if not key.startswith("feature.")}


def _parse_string(text):
    try:
        tokens = shlex.split(text)
    except ValueError as error:
        raise TargetError(f"target string {text!r} cannot be split into words: {error}") from error
    if not tokens:
        raise TargetError("the target string is empty; try 'llvm' or 'llvm -mtriple=aarch64-linux-gnu'")
    kind, options = tokens[0], tokens[1:]
    if kind.startswith("-"):
        raise TargetError(f"target string {text!r} must start with a kind such as 'llvm', not the option {kind!r}")
    if kind not in Target.list_kinds():
        raise TargetError(f"unknown target kind {kind!r} in {text!r}; TVM knows {sorted(Target.list_kinds())}")
    types = dict(TargetKind.options_from_name(kind))
    config = {"kind": kind}
    for option in options:
        if not option.startswith("-"):
            raise TargetError(f"{option!r} in target string {text!r} is not an option of the form -name=value")
        name, has_value, value = option.lstrip("-").partition("=")
        if name not in types or name in ("kind", "host"):
            known = ", ".join(f"-{key}" for key in types if key not in ("kind", "host"))
            raise TargetError(f"unknown option -{name} in target string {text!r}; {kind} takes {known}")
        config[name] = _convert(name, value if has_value else None, types[name], text)
    return config


def _convert(name, value, type_name, text):
    if type_name == "bool":
        if value is None or value.lower() in ("1", "true"):
            return True
        if value.lower() in ("0", "false"):
            return False
    elif value is None:
        raise TargetError(f"option -{name} in target string {text!r} needs a value (-{name}=...)")
    elif type_name == "int":
        try:
            return int(value)
        except ValueError:
            pass
    elif type_name.startswith("Array"):
        return [item for item in value.split(",") if item]
    else:
        return value
    raise TargetError(f"option -{name}={value} in target string {text!r} is not a valid {type_name}")


def _check_cpu(cpu_target, original):
    mcpu = cpu_target.attrs.get("mcpu")
    if mcpu and mcpu not in codegen.llvm_get_cpu_archlist(cpu_target):
        triple = cpu_target.attrs.get("mtriple") or f"this machine's triple {codegen.llvm_get_system_triple()}"
        raise TargetError(f"-mcpu={mcpu} in {_describe(original)} is not a CPU LLVM knows for {triple}")


def _describe(target):
    return repr(target) if isinstance(target, (str, dict)) else str(target)


def is_aarch64(target):
    """Whether code for ``target`` (or, for a GPU target, its host) runs on a 64-bit ARM CPU."""
    cpu_target = target.host if target.kind.name != "llvm" and target.host is not None else target
    return str(cpu_target.attrs.get("mtriple", "")).startswith("aarch64")


def is_android(target):
    """Whether ``target`` (or its host) is an Android triple, which needs the NDK to link."""
    cpu_target = target.host if target.kind.name != "llvm" and target.host is not None else target
    return "android" in str(cpu_target.attrs.get("mtriple", ""))


def default_cross_compiler(target):
    """The compiler driver that links a library for ``target``, or None for this machine's own.

    Parameters
    ----------
    target : tvm.target.Target

    Returns
    -------
    str or None
    """
    if is_android(target):
        ndk = os.environ.get("TVM_NDK_CC")
        if not ndk:
            raise RuntimeError("exporting for Android needs the NDK: set TVM_NDK_CC to the NDK's "
                               "aarch64-linux-android<API>-clang++ or pass cross_compiler=")
        return ndk
    if is_aarch64(target) and platform.machine() not in ("aarch64", "arm64"):
        return AARCH64_LINUX_CXX
    return None


def target_slug(target):
    """A folder name for a target: ``llvm-rocketlake``, ``llvm-aarch64-linux-gnu``, ``opencl-mali``."""
    target = parse_target(target)
    parts = [target.kind.name]
    for attr in ("device", "mtriple", "mcpu"):
        value = target.attrs.get(attr)
        if value:
            parts.append(str(value))
    return "-".join("".join(ch if ch.isalnum() or ch in "._" else "-" for ch in part) for part in parts)
