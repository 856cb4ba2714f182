"""Fast single-precision exp, tanh and sigmoid, as C source emitted into policy.c when used.

newlib's `tanhf` costs about 79 instructions per call on the Cortex-M4F and `expf` is of the same
order; in a policy with a few hundred activations that is a quarter of the inference. `ns_expf` splits
x = n ln2 + r with |r| <= ln2/2, evaluates the degree-6 Taylor polynomial of exp(r) (truncation error
below 1.3e-7 relative) and builds 2^n in the exponent bits: about 20 instructions, no library call,
no table. tanh and the sigmoid are one `ns_expf` and one division each, exact to a few 1e-7 absolute,
well inside the 1e-4 budget a whole policy is held to against onnxruntime. Inputs are clamped to
[-87, 88] so 2^n stays a normal float; for a policy that only matters far in the saturated tails.
"""

from __future__ import annotations

EXPF = """\
static inline float ns_expf(float x)
{
    union { float f; int32_t i; } u;
    if (x > 88.0f) x = 88.0f;
    if (x < -87.0f) x = -87.0f;
    /* adding 1.5 * 2^23 leaves round(x / ln2) in the low mantissa bits */
    u.f = x * 1.44269504f + 12582912.0f;
    int32_t n = u.i - 0x4B400000;
    float fn = (float)n;
    /* ln2 in two parts (Cody-Waite) so that n * ln2_hi is exact */
    float r = x - fn * 0.693359375f + fn * 2.12194440e-4f;
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.66666667e-1f + r * (4.16666667e-2f
              + r * (8.33333333e-3f + r * 1.38888889e-3f)))));
    u.i = (n + 127) << 23;
    return p * u.f;
}
"""

TANHF = """\
static inline float ns_tanhf(float x)
{
    float a = x < 0.0f ? -x : x;
    float t = 1.0f - 2.0f / (ns_expf(2.0f * a) + 1.0f);
    return x < 0.0f ? -t : t;
}
"""

SIGMOIDF = """\
static inline float ns_sigmoidf(float x)
{
    return 1.0f / (1.0f + ns_expf(-x));
}
"""

# name -> (helpers it calls, C source); dependencies come first in the emitted file.
HELPERS: dict[str, tuple[tuple[str, ...], str]] = {
    "ns_expf": ((), EXPF),
    "ns_tanhf": (("ns_expf",), TANHF),
    "ns_sigmoidf": (("ns_expf",), SIGMOIDF),
}


def helper_definitions(used: set[str]) -> list[str]:
    """C definitions of the used helpers and their dependencies, each defined before its callers."""
    ordered: list[str] = []

    def add(name: str) -> None:
        deps, _ = HELPERS[name]
        for dep in deps:
            add(dep)
        if name not in ordered:
            ordered.append(name)

    for name in sorted(used):
        add(name)
    return [HELPERS[name][1] for name in ordered]
