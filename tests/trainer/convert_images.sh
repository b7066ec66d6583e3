# harness convert images: class folders of PNG (RGB, gray, RGBA) and JPEG files made with PIL,
# plus a truncated JPEG and a PNG of garbage: refused by name (--on-bad fail), named and
# skipped (--on-bad skip); the HDF5 contents checked with h5py against PIL's own decoding
# (PNG exact, JPEG within 2 levels), class names and counts, per-class validation split, mean
# and std; --size resizes; harness train reads the result.
source "$(dirname "$0")/common.sh"
I=$WORK/images
rm -rf "$I"; mkdir -p "$I"
"$PY" - "$I/root" <<'PY'
import os, sys
import numpy as np
from PIL import Image
root = sys.argv[1]
rng = np.random.default_rng(5)
def save(cls, name, arr, **kw):
    os.makedirs(f"{root}/{cls}", exist_ok=True)
    Image.fromarray(arr).save(f"{root}/{cls}/{name}", **kw)
for i in range(6):
    save("cat", f"c{i}.png", rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
for i in range(5):   # smooth content: JPEG keeps it closely
    y, x = np.mgrid[0:20, 0:30]
    img = np.stack([(x * 8 + i * 10) % 256, (y * 12) % 256, np.full_like(x, 40 * i)], -1)
    save("dog", f"d{i}.JPG", img.astype(np.uint8), quality=95)
for i in range(3):
    save("zebra", f"z{i}.png", rng.integers(0, 256, (20, 30), dtype=np.uint8))   # gray
save("zebra", "z3.png", np.dstack([rng.integers(0, 256, (20, 30, 3), dtype=np.uint8),
                                    np.full((20, 30, 1), 255, np.uint8)]))        # RGBA, opaque
open(f"{root}/dog/notes.txt", "w").write("not an image, not listed\n")
good = open(f"{root}/dog/d0.JPG", "rb").read()
open(f"{root}/dog/broken.jpg", "wb").write(good[: len(good) // 2])
open(f"{root}/cat/garbage.png", "wb").write(rng.integers(0, 256, 500, dtype=np.uint8).tobytes())
PY

# 1. the default refuses the first bad file, naming it, and leaves no output
rc=0; "$HARNESS" convert images "$I/root" --out "$I/out" 2>"$I/err.txt" || rc=$?
[ $rc -eq 1 ] || fail "bad image: exit $rc, want 1"
grep -q "root/cat/garbage.png: cannot decode" "$I/err.txt" || fail "message: $(cat "$I/err.txt")"
[ ! -e "$I/out/train.h5" ] || fail "a refused conversion left train.h5"
ls "$I/out" | grep -q tmp && fail "a refused conversion left a temporary file"

# 2. --on-bad skip: both bad files named, the rest converted at their own size
"$HARNESS" convert images "$I/root" --out "$I/out" --on-bad skip --val-fraction 0.25 \
  2>"$I/err.txt" | tee "$I/out.txt"
grep -q "skipping .*root/cat/garbage.png" "$I/err.txt" || fail "garbage.png not named: $(cat "$I/err.txt")"
grep -q "skipping .*root/dog/broken.jpg" "$I/err.txt" || fail "broken.jpg not named: $(cat "$I/err.txt")"
grep -Eq "3 classes, 20x30 RGB: [0-9]+ train, [0-9]+ val, 2 skipped" "$I/out.txt" || fail "summary: $(cat "$I/out.txt")"
"$PY" - "$I" <<'PY'
import glob, sys
import h5py, numpy as np
from PIL import Image
w = sys.argv[1]
src = {}
for path in sorted(glob.glob(f"{w}/root/*/*")):
    cls = path.split("/")[-2]
    try:
        src.setdefault(cls, []).append((path, np.asarray(Image.open(path).convert("RGB"))))
    except Exception:
        pass   # the two bad files
classes = ["cat", "dog", "zebra"]
seen = {p: 0 for c in src for p, _ in src[c]}
counts = {}
for split in ("train", "val"):
    with h5py.File(f"{w}/out/{split}.h5") as f:
        x, y = f["images"][()], f["labels"][()]
        assert x.dtype == np.uint8 and x.shape[1:] == (20, 30, 3), (x.dtype, x.shape)
        assert f.attrs["num_classes"] == 3
        names = [n.decode() if isinstance(n, bytes) else n for n in f.attrs["class_names"]]
        assert names == classes, names
        v = x / 255.0
        assert abs(f.attrs["mean"] - v.mean()) < 1e-5 and abs(f.attrs["std"] - v.std()) < 1e-5
        for img, label in zip(x, y):
            cls = classes[label]
            counts[(split, cls)] = counts.get((split, cls), 0) + 1
            diffs = [(np.abs(img.astype(int) - s.astype(int)).max(), p) for p, s in src[cls]]
            d, p = min(diffs)
            assert d <= (2 if cls == "dog" else 0), (split, cls, d)
            seen[p] += 1
assert all(n == 1 for n in seen.values()), seen
# per class, round(0.25 x files listed) are picked for val.h5 (a picked file that does not
# decode is skipped): cat 7 listed -> 2, dog 6 -> 2, zebra 4 -> 1
for cls, good, picked, bad in (("cat", 6, 2, 1), ("dog", 5, 2, 1), ("zebra", 4, 1, 0)):
    tr, va = counts.get(("train", cls), 0), counts.get(("val", cls), 0)
    assert tr + va == good and picked - bad <= va <= picked, (cls, tr, va)
print("convert images: every decodable image once, exact (PNG) / within 2 (JPEG), splits", counts)
PY

# 3. --size: resized; harness trains on the files as they are
"$HARNESS" convert images "$I/root" --out "$I/small" --on-bad skip --size 10x12 \
  --val-fraction 0 2>/dev/null
[ ! -e "$I/small/val.h5" ] || fail "--val-fraction 0 wrote val.h5"
"$PY" - "$I/small/train.h5" <<'PY'
import sys, h5py
with h5py.File(sys.argv[1]) as f:
    assert f["images"].shape == (15, 10, 12, 3), f["images"].shape
PY
"$HARNESS" train --set data.train="$I/out/train.h5" --set data.test="$I/out/val.h5" \
  --set "model.layers=[{type: flatten}, {type: linear, out: 3}]" --set train.steps=2 \
  --set train.batch_size=4 --set log.progress=false --set run.dir="$I/run" 2>&1 | tail -2
rc=0; "$HARNESS" convert images "$I/nowhere" --out "$I/x" 2>"$I/err.txt" || rc=$?
[ $rc -eq 1 ] && grep -q "nowhere" "$I/err.txt" || fail "missing ROOT: exit $rc, $(cat "$I/err.txt")"
echo "convert images: all checks passed"
