"""ONNX -> C99 code generation for the onboard policy (see generate.py for the pipeline)."""

from nanoswarm.export.codegen.generate import GeneratedC, generate_c
from nanoswarm.export.codegen.model import CodegenError

__all__ = ["CodegenError", "GeneratedC", "generate_c"]
