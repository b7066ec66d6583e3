import json, sys
from PIL import Image, ImageDraw
ev = [e for e in json.load(open(sys.argv[1]))["traceEvents"] if e["ph"] == "X" and e["args"]["step"] in (301, 302)]
t0 = min(e["ts"] for e in ev); t1 = max(e["ts"] + e["dur"] for e in ev)
W, H, left = 1400, 330, 170
img = Image.new("RGB", (W, H), "white"); d = ImageDraw.Draw(img)
col = {"step": (210, 210, 210), "data wait": (240, 200, 60), "all-reduce wait": (230, 90, 80), "all-reduce start": (240, 150, 140),
       "all-reduce bucket": (200, 60, 60), "optimizer": (120, 90, 200), "zero gradients": (150, 150, 150), "copy to device": (90, 180, 90),
       "loss": (60, 160, 200), "evaluation": (0, 0, 0), "checkpoint write": (0, 0, 0)}
x = lambda t: left + (t - t0) / (t1 - t0) * (W - left - 10)
rows = [(r, tid) for r in (0, 1) for tid in (0, 1, 2)]
names = {0: "host", 1: "compute", 2: "all-reduce"}
for i, (r, tid) in enumerate(rows):
    y = 20 + i * 48
    d.text((8, y + 12), f"rank {r} {names[tid]}", fill="black")
    for e in ev:
        if e["pid"] != r or e["tid"] != tid: continue
        c = col.get(e["name"], (70, 130, 220) if e["name"].startswith("forward") else (30, 80, 170))
        top = y + (14 if e["name"] != "step" else 0)
        d.rectangle([x(e["ts"]), top, max(x(e["ts"] + e["dur"]), x(e["ts"]) + 1), y + 36], fill=c, outline="white")
        if x(e["ts"] + e["dur"]) - x(e["ts"]) > 70 and e["name"] != "step":
            d.text((x(e["ts"]) + 3, top + 4), e["name"], fill="white")
for ms in range(0, int((t1 - t0) / 1000) + 1):
    d.line([x(t0 + ms * 1000), H - 25, x(t0 + ms * 1000), H - 18], fill="black"); d.text((x(t0 + ms * 1000) - 8, H - 15), f"{ms} ms", fill="black")
img.save(sys.argv[2])
