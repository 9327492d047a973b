"""Compile an existing bundle for the Edge TPU: ``edgesiam compile-edgetpu BUNDLE``.

A Coral device runs only a model compiled by Coral's ``edgetpu_compiler``, which exists for x86-64
Linux alone, so the compile happens on a workstation, never on the Pi or the Dev Board.
``edgesiam export`` compiles when the compiler is on PATH; this compiles a bundle exported without
it (the shipped ``export/*`` bundles): its int8 model becomes ``model_edgetpu.tflite``, the log is
kept, and the manifest (hashes, gate, Edge TPU section) is rewritten. Needs no tensorflow or torch.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import textwrap
from pathlib import Path
from typing import Any, Final

from edgesiam.argparsing import add_command
from edgesiam.errors import BundleError
from edgesiam.export.gate import (
    COMPILER,
    CompilerResult,
    compiler_check,
    find_compiler,
    run_edgetpu_compiler,
)
from edgesiam.model.bundle import BundleModel, GateCheck, Manifest, load_manifest, write_manifest

__all__ = ["add_compile_parser", "cmd_compile_edgetpu", "compile_bundle"]

EDGETPU_FILE: Final = "model_edgetpu.tflite"
LOG_FILE: Final = "edgetpu_compiler.log"
CARD_FILE: Final = "MODEL_CARD.md"
NOT_COMPILED: Final = "Not compiled (edgetpu_compiler was not on PATH at export)."
HELP: Final = "compile a bundle's int8 model for a Coral Edge TPU (x86-64 Linux)"
DESCRIPTION: Final = textwrap.dedent(
    """
    Compile a bundle's int8 model for a Coral Edge TPU and add it to the bundle as
    model_edgetpu.tflite, with the compiler's log; the manifest's hashes are rewritten. Nothing
    changes unless every op lands on the Edge TPU.

    The Edge TPU runs only models compiled by Coral's edgetpu_compiler, which exists for x86-64
    Linux alone: compile on a workstation, then copy the bundle to the Coral device (the Coral
    profiles in firmware_configs/ refuse a bundle without this model). edgesiam export compiles by
    itself when edgetpu_compiler is on PATH; this command compiles a bundle exported without it,
    such as the shipped export/speaker.

    Example (x86-64 Linux, edgetpu_compiler from Coral's package repository):
      edgesiam compile-edgetpu export/speaker
      scp -r export/speaker coral.lan:/opt/edgesiam/bundles/
    """
)
INSTALL_HINT: Final = (
    "install Coral's Edge TPU compiler (x86-64 Linux only: the package edgetpu-compiler from "
    "Coral's Debian repository, https://coral.ai/docs/edgetpu/compiler/) or give its path with "
    "--edgetpu-compiler"
)


def _compiled_manifest(
    bundle: Path, manifest: Manifest, result: CompilerResult, detail: str
) -> Manifest:
    int8 = manifest.models[manifest.model]
    models = dict(manifest.models)
    models["edgetpu"] = BundleModel(
        file=EDGETPU_FILE,
        variant="edgetpu",
        bytes=(bundle / EDGETPU_FILE).stat().st_size,
        input=int8.input,
        output=int8.output,
    )
    edgetpu = manifest.edgetpu.model_copy(
        update={
            "compiler": result.version,
            "model": EDGETPU_FILE,
            "log": LOG_FILE,
            "ops_on_tpu": result.ops_on_tpu,
            "ops_on_cpu": result.ops_on_cpu,
        }
    )
    checks = [c for c in manifest.gate.checks if c.name != "edgetpu.compiler"]
    checks.append(GateCheck(name="edgetpu.compiler", passed=True, detail=detail))
    gate = manifest.gate.model_copy(update={"checks": checks})
    return manifest.model_copy(update={"models": models, "edgetpu": edgetpu, "gate": gate})


def _note_in_card(bundle: Path, manifest: Manifest) -> None:
    """The model card's Edge TPU line, as the export would have written it."""
    card = bundle / CARD_FILE
    if not card.is_file():
        return
    e = manifest.edgetpu
    done = (
        f"Compiled with edgetpu_compiler {e.compiler or ''}: `{e.model}` "
        f"({e.ops_on_tpu} ops on the TPU, {e.ops_on_cpu} on the CPU)."
    )
    card.write_text(card.read_text(encoding="utf-8").replace(NOT_COMPILED, done), encoding="utf-8")


def compile_bundle(bundle_dir: str | Path, compiler: str | None = None) -> Manifest:
    """Add ``model_edgetpu.tflite`` to a bundle; a ``BundleError`` says why it could not be done.

    The bundle is checked against its hashes first; nothing in it changes unless the compile is
    clean (every op on the Edge TPU).
    """
    bundle = Path(bundle_dir)
    manifest = load_manifest(bundle)
    path = find_compiler(compiler)
    if path is None:
        raise BundleError(f"{compiler or COMPILER} was not found; {INSTALL_HINT}")
    with tempfile.TemporaryDirectory(prefix="edgetpu-") as tmp:
        result = run_edgetpu_compiler(
            bundle / manifest.models[manifest.model].file, Path(tmp), path
        )
        check = compiler_check(result)
        if not check.passed or result.model is None:
            log = result.log.read_text(encoding="utf-8") if result.log else ""
            raise BundleError(f"{bundle}: {check.detail}; nothing was changed\n{log}".rstrip())
        shutil.copyfile(result.model, bundle / EDGETPU_FILE)
        if result.log is not None:
            shutil.copyfile(result.log, bundle / LOG_FILE)
    compiled = _compiled_manifest(bundle, manifest, result, check.detail)
    _note_in_card(bundle, compiled)
    return write_manifest(bundle, compiled)


def cmd_compile_edgetpu(args: argparse.Namespace) -> int:
    manifest = compile_bundle(Path(args.bundle), args.edgetpu_compiler)
    e = manifest.edgetpu
    print(
        f"{args.bundle}: added {e.model} (edgetpu_compiler {e.compiler or '?'}, {e.ops_on_tpu} "
        f"ops on the Edge TPU, {e.ops_on_cpu} on the CPU); copy the bundle to the Coral device"
    )
    return 0


def add_compile_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``compile-edgetpu`` to an ``argparse`` sub-parser collection."""
    p = add_command(subparsers, "compile-edgetpu", help=HELP, description=DESCRIPTION)
    p.add_argument("bundle", metavar="BUNDLE_DIR", help="an exported bundle, e.g. export/speaker")
    p.add_argument(
        "--edgetpu-compiler",
        metavar="PATH",
        help="the compiler to run (default: edgetpu_compiler on PATH)",
    )
    p.set_defaults(func=cmd_compile_edgetpu)
    return p  # type: ignore[no-any-return]
