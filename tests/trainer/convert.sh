# harness convert fashion-mnist on Debian's IDX files; the result reads back with h5py.
source "$(dirname "$0")/common.sh"
rm -rf "$DATA"
"$HARNESS" convert fashion-mnist --src /usr/share/datasets/fashion-mnist --out "$DATA"
"$PY" - "$DATA" <<'PY'
import sys, h5py, numpy as np
d = sys.argv[1]
for split, n in (("train", 60000), ("test", 10000)):
    with h5py.File(f"{d}/{split}.h5", "r") as f:
        x, y = f["images"], f["labels"][:]
        assert x.shape == (n, 28, 28) and x.dtype == np.uint8, (x.shape, x.dtype)
        assert y.shape == (n,) and y.min() == 0 and y.max() == 9
        assert (np.bincount(y) == n // 10).all(), np.bincount(y)
        assert int(f.attrs["num_classes"]) == 10
        names = [s.decode() if isinstance(s, bytes) else s for s in f.attrs["class_names"]]
        assert names[0] == "T-shirt/top" and names[9] == "Ankle boot", names
print("convert: ok")
PY
