"""The ``--target`` option of ``compile`` and ``tune``, and their help on naming a real phone's target.

The README is not at hand on a phone's host, so ``--help`` lists targets of common phones. Each is
checked by :func:`tvm_sparse.target.parse_target` in the tests (it rejects CPUs LLVM does not know).
"""

import argparse
import shutil
import textwrap

#: ``(what it is, target string)``: CPU targets of common phones, whose cores LLVM knows by name.
PHONE_CPU_TARGETS = (
    ("big cores of a Snapdragon 855/865, Kirin 980/990 or Dimensity 1000 (Cortex-A76/A77 class)",
     "llvm -mtriple=aarch64-linux-android -mcpu=cortex-a76"),
    ("big cores of a Snapdragon 888, Exynos 2100 or Dimensity 1200 (Cortex-A78)",
     "llvm -mtriple=aarch64-linux-android -mcpu=cortex-a78"),
    ("the prime core of a Snapdragon 888, Exynos 2100 or Google Tensor (Cortex-X1)",
     "llvm -mtriple=aarch64-linux-android -mcpu=cortex-x1"),
    ("the little cores of most phones since 2018 (Cortex-A55)",
     "llvm -mtriple=aarch64-linux-android -mcpu=cortex-a55"),
    ("older and low-end phones (Cortex-A53)",
     "llvm -mtriple=aarch64-linux-android -mcpu=cortex-a53"),
    ("an aarch64 Linux board or phone, any core (NEON only)",
     "llvm -mtriple=aarch64-linux-gnu -mattr=+neon"),
)

#: ``(what it is, target string)``: GPU targets of phones (OpenCL, beside an aarch64 Linux host).
PHONE_GPU_TARGETS = (
    ("Mali GPUs (Exynos, Dimensity, Kirin, Google Tensor)", "opencl -device=mali"),
    ("Adreno GPUs (Snapdragon)", "opencl -device=adreno"),
)


def add_target_argument(parser):
    """Add ``--target`` (default ``llvm``: this CPU)."""
    parser.add_argument("--target", default="llvm",
                        help="target string (default llvm: this CPU); a phone's: see the examples below")


def phone_target_epilog():
    """The help text listing the phone targets, one example per line (for a raw-text epilog)."""
    lines = ["naming a real phone's target (--target); any CPU LLVM knows is accepted as -mcpu, "
             "the phone's spec sheet names its cores:"]
    for what, target in PHONE_CPU_TARGETS:
        lines += [f"  {what}:", f"    {target}"]
    lines.append("GPU targets (compile only: tune measures CPU targets):")
    for what, target in PHONE_GPU_TARGETS:
        lines += [f"  {what}:", f"    {target}"]
    lines.append("A library for Android links with $TVM_NDK_CC (the NDK's clang++ for the phone's ABI), one for "
                 "aarch64 Linux with aarch64-linux-gnu-g++.")
    return "\n".join(lines)


def phone_target_help(description):
    """``add_parser`` keyword arguments: ``description`` and the phone targets after the options.

    argparse's raw formatter keeps the examples one per line; the description is wrapped here to
    the width argparse would use, since that formatter does not wrap it.
    """
    width = shutil.get_terminal_size().columns - 2
    return {"description": textwrap.fill(description, width), "formatter_class": argparse.RawDescriptionHelpFormatter,
            "epilog": "\n".join(textwrap.fill(line, width, subsequent_indent=" " * (len(line) - len(line.lstrip())))
                                for line in phone_target_epilog().splitlines())}
