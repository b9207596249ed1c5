"""What every benchmark says about the machine it ran on (imported by the bench scripts)."""

import os
import platform
from pathlib import Path

FEATURES = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def cpu_line() -> str:
    """The CPU model, logical CPUs, its vector features and whether bf16 is native."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
                 platform.processor() or "?")
    native = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    features = " ".join(f for f in FEATURES if f in flags) or "no AVX2"
    return (f"CPU: {model}; {os.cpu_count()} logical CPUs; {features}; "
            f"bf16 native: {'yes (' + ', '.join(native) + ')' if native else 'no (emulated: tuneforge runs fp32)'}")
