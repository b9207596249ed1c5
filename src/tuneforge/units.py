"""Numbers in human units ("134.5 M", "538 MB", "2.07 GB", "45 s"), and a dash for what is missing.

A reader compares routes by eye, so every figure in the report goes through one of these."""

MISSING = "–"


def count(n: int | float | None) -> str:
    """A parameter count with one decimal and a k / M / B suffix: 134515008 -> "134.5 M"."""
    if n is None:
        return MISSING
    for divisor, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= divisor * 0.9995:  # 999_960 shows as "1.0 M", not "1000.0 k"
            return f"{n / divisor:.1f} {suffix}"
    return f"{n:,.0f}"


def flops(n: float | None) -> str:
    """Floating-point operations with three significant digits: 4.1e10 -> "41.0 GFLOP"."""
    if n is None:
        return MISSING
    for divisor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= divisor * 0.9995:
            return f"{_three_digits(n / divisor)} {prefix}FLOP"
    return f"{n:.0f} FLOP"


def exact(n: int | None) -> str:
    """An exact count with thousands separators, for claims that compare counts exactly."""
    return MISSING if n is None else f"{n:,}"


def size(n_bytes: int | float | None) -> str:
    """Bytes in decimal units with three significant digits: 538000000 -> "538 MB"."""
    if n_bytes is None:
        return MISSING
    value = float(n_bytes)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if unit == "B" and abs(value) < 999.5:
            return f"{value:.0f} B"
        if abs(value) < 999.5 or unit == "TB":
            return f"{_three_digits(value)} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def seconds(s: float | None) -> str:
    """A duration as a person reads it: "0.4 s", "45 s", "3 min 32 s", "1 h 02 min"."""
    if s is None:
        return MISSING
    if s < 10:
        return f"{s:.1f} s"
    whole = round(s)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def milliseconds(ms: float | None) -> str:
    """Latency per example: "12.1 ms"."""
    return MISSING if ms is None else f"{ms:.1f} ms"


def rate(per_second: float | None) -> str:
    """Throughput: "33.9 ex/s"."""
    return MISSING if per_second is None else f"{per_second:.1f} ex/s"


def score(value: float | None) -> str:
    """A metric value with three decimals: enough to tell routes apart on a test split of ~100."""
    return MISSING if value is None else f"{value:.3f}"


def score_ci(stat: dict | None) -> str:
    """ "0.608 (0.50–0.73)": the mean with its 95% interval, two decimals for the bounds."""
    if not stat or stat.get("mean") is None:
        return MISSING
    ci = stat.get("ci95")
    if not ci:
        return score(stat["mean"])
    return f"{stat['mean']:.3f} ({ci[0]:.2f}–{ci[1]:.2f})"


def percent(share: float | None) -> str:
    """A share as a percentage with one decimal: 0.056 -> "5.6%"."""
    return MISSING if share is None else f"{share * 100:.1f}%"


def mark(holds: bool | None) -> str:
    """A check's outcome as one symbol: ✓ holds, ✗ fails, a dash when there was nothing to check."""
    return {True: "✓", False: "✗", None: MISSING}[holds]


def _three_digits(value: float) -> str:
    if abs(value) >= 99.95:
        return f"{value:.0f}"
    if abs(value) >= 9.995:
        return f"{value:.1f}"
    return f"{value:.2f}"
