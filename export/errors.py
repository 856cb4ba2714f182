"""The export path's errors, in one light module so the CLI can name them without importing onnx.

Each says what cannot be done and how to fix it; `EXPORT_FAILURES` is the CLI's label and exit code for each.
"""

from __future__ import annotations


class CrazyflieAppError(ValueError):
    """The policy, its header or the parameter set cannot make a working Crazyflie app."""


class HostBuildError(RuntimeError):
    """The generated C did not compile on the host (or there is no compiler); the message has gcc's output."""


class McuInputError(ValueError):
    """The policy folder or the observations do not fit the generated-C contract."""


class McuToolchainError(RuntimeError):
    """The cross-toolchain or the emulated MCU gave no result: a tool is missing, the C does not
    compile, or the policy hung or faulted under QEMU. The message names the cause and the fix."""


class ObservationError(ValueError):
    """The policy and the environment asked to fly it do not fit together."""


class OnnxExportError(ValueError):
    """The export was asked for something that cannot be exported as given; the message says the fix."""


class CodegenError(ValueError):
    """The model cannot be turned into C; the message names the node or tensor and what to do instead."""


class ExportCheckFailed(RuntimeError):
    """A verification step of an export exceeded its tolerance; the message and report.json say which."""


EXPORT_FAILURES: tuple[tuple[type[BaseException], str, int], ...] = (
    (OnnxExportError, "[red]export error:[/red]", 2),
    (ObservationError, "[red]export error:[/red]", 2),
    (CodegenError, "[red]code generation error:[/red]", 2),
    (McuInputError, "[red]export error:[/red]", 2),
    (CrazyflieAppError, "[red]Crazyflie app error:[/red]", 2),
    (HostBuildError, "[red]host build failed:[/red]", 3),
    (McuToolchainError, "[red]MCU check failed:[/red]", 4),
    (ExportCheckFailed, "[red]export check failed:[/red]", 5),
)
