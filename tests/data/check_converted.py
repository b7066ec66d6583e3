#!/usr/bin/python3
"""h5py reads the converter's output of the Fashion-MNIST test split and finds exactly the
IDX contents: data_convert_h5py, after data_convert.  Exits 77 (skip) without h5py/numpy."""
import gzip
import os
import sys

try:
    import h5py
    import numpy as np
except ImportError as e:
    print(f"skipping: {e}")
    sys.exit(77)


def idx(path, offset):
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)


def main(h5_path, src):
    if not os.path.exists(h5_path):
        print(f"skipping: {h5_path} not found (data_convert skipped?)")
        sys.exit(77)
    images = idx(os.path.join(src, "t10k-images-idx3-ubyte.gz"), 16).reshape(-1, 28, 28)
    labels = idx(os.path.join(src, "t10k-labels-idx1-ubyte.gz"), 8)
    with h5py.File(h5_path, "r") as f:
        x, y = f["images"], f["labels"]
        assert x.shape == (10000, 28, 28) and x.dtype == np.uint8, (x.shape, x.dtype)
        assert y.shape == (10000,) and y.dtype == np.int32, (y.shape, y.dtype)
        assert np.array_equal(x[...], images)
        assert np.array_equal(y[...], labels.astype(np.int32))
        assert int(f.attrs["num_classes"]) == 10
        names = list(f.attrs["class_names"])
        assert all(isinstance(n, str) for n in names), names
        assert names[0] == "T-shirt/top" and names[9] == "Ankle boot", names
    print("h5py reads the converted file: ok")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
