"""Probe (issue 15): split the cached single-object clips that move left/right/up/down (data/shapes-mix/cache-v2) into a training
cache and a 120-clip probe cache under data/motion-one/ (symlinks), for benchmarks/probe_motion_one.sh, and the motion-heavy
mix data/motion-heavy for benchmarks/probe_motion_mix.sh."""
import json, os, re, sys
from pathlib import Path
src = Path("data/shapes-mix/cache-v2")
rows = [json.loads(l) for l in (src / "index.jsonl").read_text().splitlines() if l.strip()]
keep = [r for r in rows if " and " not in r["caption"] and re.search(r"\b(left|right|up|down)\b", r["caption"])
        and "curve" not in r["caption"] and "path" not in r["caption"] and (src / r["file"]).is_file()]
print(len(rows), "cached;", len(keep), "single-object, straight motion")
for name, part in (("train", keep[:-120]), ("probe", keep[-120:])):
    d = Path(f"data/motion-one/{name}"); d.mkdir(parents=True, exist_ok=True)
    for r in part:
        link = d / r["file"]
        if not link.exists():
            os.symlink(os.path.abspath(src / r["file"]), link)
    (d / "index.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    print(name, len(part))
# The motion-heavy mix for benchmarks/probe_motion_mix.sh: the whole cache less the probe clips, plus the motion clips twice.
probe = {r["key"] for r in keep[-120:]}
rest = [r for r in rows if r["key"] not in probe and (src / r["file"]).is_file()]
d = Path("data/motion-heavy"); d.mkdir(parents=True, exist_ok=True)
for r in rest:
    if not (d / r["file"]).exists():
        os.symlink(os.path.abspath(src / r["file"]), d / r["file"])
(d / "index.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rest + keep[:-120] * 2))
print("motion-heavy", len(rest) + 2 * len(keep[:-120]))
