"""The test scripts' "worst difference", written so that NaN never passes.

Python's max() keeps its first item unless a later one is greater, and `nan > x` is False, so
max(abs(a - b) for ...) drops a NaN that is not first and a run with a NaN loss could compare
as close.  worst() returns NaN when any value is NaN; a check `worst(...) <= tol` then fails.
tests/kernels/test_compare_nan.sh feeds it NaN."""
import math


def worst(values):
    """The largest of values (0.0 for none); NaN when any of them is NaN."""
    vs = [float(v) for v in values]
    if any(math.isnan(v) for v in vs):
        return math.nan
    return max(vs, default=0.0)
