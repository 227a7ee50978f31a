"""Benchmarks: each runs our code and its anchor side by side and prints ratios (not part of make test)."""

import resource


def own_peak_mib() -> int:
    """This process's peak RSS since it started its program, in MiB: Linux's VmHWM. Not
    ru_maxrss: a child started from a benchmark process keeps the parent's RSS at the fork in it
    across exec (with Presidio loaded, over a gigabyte: the 1,518 MiB once printed for the 200 MB
    cell of `benchmarks.classify` was the parent's, not the scan's)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
