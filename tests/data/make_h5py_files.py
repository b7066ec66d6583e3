#!/usr/bin/python3
"""Writes classification files the way people write them with h5py (fixture for data_h5py).

Contents follow the formulas of tests/data/data_test_util.c:
  pixel(i, e) = (i*31 + e*7) % 256 (uint8), (i*1024 + e) / 1024 (float32)
  label(i)    = (i*7 + 3) % num_classes
Exits 77 (skip) when h5py or numpy is missing."""
import os
import sys

try:
    import h5py
    import numpy as np
except ImportError as e:
    print(f"skipping: {e}")
    sys.exit(77)


def pixels(n, sample_shape, dtype):
    elems = int(np.prod(sample_shape))
    i = np.arange(n, dtype=np.int64)[:, None]
    e = np.arange(elems, dtype=np.int64)[None, :]
    if dtype == np.uint8:
        x = ((i * 31 + e * 7) % 256).astype(np.uint8)
    else:
        x = ((i * 1024 + e) / 1024.0).astype(np.float32)
    return x.reshape((n,) + tuple(sample_shape))


def labels(n, num_classes, dtype):
    return ((np.arange(n) * 7 + 3) % num_classes).astype(dtype)


def main(out):
    os.makedirs(out, exist_ok=True)
    p = lambda name: os.path.join(out, name)

    # The obvious way: assign arrays, int64 labels, python int and list of str attributes.
    with h5py.File(p("u8_hw.h5"), "w") as f:
        f["images"] = pixels(57, (28, 28), np.uint8)
        f["labels"] = labels(57, 10, np.int64)
        f.attrs["num_classes"] = 10
        f.attrs["class_names"] = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                  "Sandal", "Shirt", "Sneaker", "Bag", "Ankle böot"]

    # num_classes as a 1-element array on /labels, fixed-length bytes names, mean/std.
    with h5py.File(p("f32_hwc.h5"), "w") as f:
        f["images"] = pixels(33, (8, 8, 3), np.float32)
        d = f.create_dataset("labels", data=labels(33, 5, np.int64))
        d.attrs["num_classes"] = np.array([5], dtype=np.int64)
        f.attrs["class_names"] = np.array([b"zero", b"one", b"two", b"three", b"four"])
        f.attrs["mean"] = 0.5
        f.attrs["std"] = np.float32(0.25)

    # Chunked + gzip, uint8 labels, numpy integer attribute, vlen ASCII names.
    with h5py.File(p("u8_flat_gzip.h5"), "w") as f:
        f.create_dataset("images", data=pixels(40, (20,), np.uint8), chunks=(8, 20),
                         compression="gzip", shuffle=True)
        f.create_dataset("labels", data=labels(40, 7, np.uint8))
        f.attrs["num_classes"] = np.uint16(7)
        f.attrs.create("class_names", [f"c{k}" for k in range(7)],
                       dtype=h5py.string_dtype("ascii"))

    # float32 [N,D], int32 labels.
    with h5py.File(p("f32_flat.h5"), "w") as f:
        f["images"] = pixels(25, (16,), np.float32)
        f["labels"] = labels(25, 3, np.int32)
        f.attrs["num_classes"] = np.int8(3)

    # Files that must be refused with a clear message.
    with h5py.File(p("bad_float64.h5"), "w") as f:
        f["images"] = pixels(10, (4, 4), np.float32).astype(np.float64)
        f["labels"] = labels(10, 10, np.int64)
        f.attrs["num_classes"] = 10
    with h5py.File(p("bad_labels_2d.h5"), "w") as f:
        f["images"] = pixels(10, (4, 4), np.uint8)
        f["labels"] = labels(10, 10, np.int64).reshape(10, 1)
        f.attrs["num_classes"] = 10
    with h5py.File(p("bad_num_classes_float.h5"), "w") as f:
        f["images"] = pixels(10, (4, 4), np.uint8)
        f["labels"] = labels(10, 10, np.int64)
        f.attrs["num_classes"] = 10.0
    with h5py.File(p("bad_label_value.h5"), "w") as f:
        f["images"] = pixels(20, (4, 4), np.uint8)
        y = labels(20, 10, np.int64)
        y[13] = 10
        f["labels"] = y
        f.attrs["num_classes"] = 10
    with h5py.File(p("bad_no_num_classes.h5"), "w") as f:
        f["images"] = pixels(20, (4, 4), np.uint8)
        f["labels"] = labels(20, 10, np.int64)
    # Token datasets the obvious way: uint16 ids, python int vocab_size, str tokenizer (a
    # variable-length string); int32 ids with numpy attributes on /tokens.  token(i) = i*37+11
    # mod vocab.
    with h5py.File(p("tokens_u16.h5"), "w") as f:
        f["tokens"] = ((np.arange(777) * 37 + 11) % 256).astype(np.uint16)
        f.attrs["vocab_size"] = 256
        f.attrs["tokenizer"] = "bytes"
    with h5py.File(p("tokens_i32.h5"), "w") as f:
        d = f.create_dataset("tokens", data=((np.arange(500) * 37 + 11) % 70001).astype(np.int32))
        d.attrs["vocab_size"] = np.int64(70001)
        d.attrs["eot_token"] = np.int32(70000)
    with h5py.File(p("bad_tokens_float.h5"), "w") as f:
        f["tokens"] = np.arange(100, dtype=np.float32)
        f.attrs["vocab_size"] = 256
    with h5py.File(p("bad_tokens_value.h5"), "w") as f:
        t = ((np.arange(300) * 37 + 11) % 256).astype(np.uint16)
        t[211] = 300
        f["tokens"] = t
        f.attrs["vocab_size"] = 256
    print(f"wrote h5py files to {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "h5py_files")
