"""A stand-in for training: epochs with checkpoints, failing or crashing on demand.

settings.json: {"epochs": N (or $FAKE_EPOCHS), "sleep": seconds per epoch, "fail_at": epoch or null,
"crash": bool}.  SIGTERM (walltime) keeps the last checkpoint; MLDS_RESUME=1
continues after it.
"""
import json
import os
import signal
import sys
import time


def save_json(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def main():
    cfg = json.load(open("settings.json"))
    epochs = int(os.environ.get("FAKE_EPOCHS") or cfg.get("epochs", 3))
    pause = float(cfg.get("sleep", 0.1))
    start = 0
    if os.environ.get("MLDS_RESUME") == "1" and os.path.exists("checkpoint.json"):
        start = json.load(open("checkpoint.json"))["epoch"] + 1
        print(f"resuming after epoch {start - 1}", flush=True)

    stop = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.append(signum))
    for epoch in range(start, epochs):
        if cfg.get("fail_at") is not None and epoch == cfg["fail_at"]:
            print(f"epoch {epoch}: loss is NaN", file=sys.stderr, flush=True)
            save_json("mlds-job.json", {"state": "failed", "step": "train", "message": f"NaN at epoch {epoch}"})
            sys.exit(1)
        if cfg.get("crash") and epoch == 1:
            print("segmentation fault (simulated)", file=sys.stderr, flush=True)
            os._exit(3)
        time.sleep(pause)
        if stop:  # walltime: drop the unfinished epoch, keep the last checkpoint
            print(f"SIGTERM: stopping, checkpoint kept at epoch {epoch - 1}", flush=True)
            sys.exit(143)
        with open("learning-curve.out", "a") as fh:
            fh.write(f"{epoch} {1.0 / (epoch + 1):.6f}\n")
        save_json("checkpoint.json", {"epoch": epoch})
        print(f"epoch {epoch} done", flush=True)
    with open("weights.001.data", "w") as fh:
        fh.write("".join(f"{0.1 * i:.3f}\n" for i in range(10)))
    save_json("mlds-job.json", {"state": "done", "step": "train", "message": f"{epochs} epochs"})


main()
