"""The layer registry on the whole keras.applications catalogue: prune at keep 0.5 and 1.0, save and load.

For every architecture constructor in ``tf_keras.applications`` (the Keras
tfmc imports), built with weights=None, 10 classes, no classifier
activation and the smallest of 32, 75, 96, 128, 224, 331 pixels it accepts:

- keep 1.0: ``tfmc.prune(model, 1.0)`` must give the same outputs;
- keep 0.5: ``tfmc.prune(model, 0.5)`` must cost fewer MACs, and the model
  saved as .keras and loaded back must give exactly the pruned outputs;
- a model without a prunable group must say why for each group.

Each architecture runs in a subprocess of its own (a crash there is
reported, not fatal), one after the other. Writes the BENCHMARKS.md
section ``catalogue``.
"""
import argparse
import inspect
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SIZES = (32, 75, 96, 128, 224, 331)


def constructors():
    """{name: constructor} of every architecture in tf_keras.applications, sorted by name."""
    from tfmc._keras import keras

    found = {}
    modules = [keras.applications] + [m for m in vars(keras.applications).values() if inspect.ismodule(m)]
    for module in modules:
        for attr in dir(module):
            fn = getattr(module, attr)
            if attr[:1].isupper() and inspect.isfunction(fn) and "weights" in inspect.signature(fn).parameters:
                found[attr] = fn
    return dict(sorted(found.items()))


def _build(fn):
    errors = []
    for size in SIZES:
        try:
            return fn(weights=None, input_shape=(size, size, 3), classes=10, classifier_activation=None), size
        except ValueError as exc:
            errors.append(f"{size}: {exc}")
    raise RuntimeError("no input size accepted: " + " | ".join(errors))


def check(name):
    """Run the three checks on architecture ``name``; return a dict of findings."""
    import numpy as np

    import tfmc
    from tfmc._keras import keras
    from tfmc.errors import PolicyError

    started = time.perf_counter()
    stages = {}

    def lap(stage):  # seconds spent in each stage, to tell Keras' time from tfmc's
        stages[stage] = round(time.perf_counter() - started - sum(stages.values()), 1)
        print(f"stage {stage} done in {stages[stage]} s", file=sys.stderr, flush=True)

    keras.utils.set_random_seed(0)
    model, size = _build(constructors()[name])
    x = np.random.default_rng(0).normal(size=(2, size, size, 3)).astype(np.float32)
    reference = model(x, training=False).numpy()
    lap("build")
    groups = tfmc.channel_groups(model)
    lap("channel_groups")
    prunable = [g for g in groups if g.prunable]
    row = {"name": name, "size": size, "groups": len(groups), "prunable": len(prunable),
           "macs": tfmc.count_macs(model), "reasons": sorted({g.reason for g in groups if not g.prunable}),
           "stages": stages}
    lap("count_macs")
    if not prunable:
        try:
            tfmc.prune(model, 0.5)
            row["error"] = "tfmc.prune accepted a model without prunable groups"
        except PolicyError as exc:
            row["outcome"] = "frozen"
            row["message"] = str(exc)[:300]
        row["seconds"] = time.perf_counter() - started
        return row
    same = tfmc.prune(model, 1.0)
    lap("prune_keep_1.0")
    row["keep1_max_abs_diff"] = float(np.max(np.abs(same(x, training=False).numpy() - reference)))
    lap("run_keep_1.0")
    pruned = tfmc.prune(model, 0.5)
    lap("prune_keep_0.5")
    row["pruned_macs"] = tfmc.count_macs(pruned)
    out = pruned(x, training=False).numpy()
    lap("run_keep_0.5")
    with tempfile.TemporaryDirectory() as folder:
        loaded = _save_and_load(pruned, model, folder, row)
    row["load_max_abs_diff"] = float(np.max(np.abs(loaded(x, training=False).numpy() - out)))
    lap("save_load")
    row["outcome"] = ("pruned" if row["keep1_max_abs_diff"] <= 1e-4 * max(1.0, float(np.abs(reference).max()))
                      and row["load_max_abs_diff"] == 0.0 and row["pruned_macs"] < row["macs"] else "FAILED")
    row["seconds"] = time.perf_counter() - started
    return row


def _reload(model, path):
    import tfmc

    tfmc.io.save_model(model, path)
    own = {type(layer).__name__: type(layer) for layer in model.layers}  # the architecture's own layers
    return tfmc.io.load_model(path, own, trust_code=True)  # built here, so its code is trusted


def _save_and_load(pruned, original, folder, row):
    """``pruned`` saved as .keras and loaded; as .h5 when tf_keras cannot reload even the unpruned model's .keras."""
    try:
        return _reload(pruned, os.path.join(folder, "pruned.keras"))
    except Exception:
        try:
            _reload(original, os.path.join(folder, "original.keras"))
        except Exception as exc:  # tf_keras' own limitation, not tfmc's: the unpruned model fails the same way
            row["format"] = f".h5 (tf_keras cannot reload the unpruned .keras either: {type(exc).__name__})"
            return _reload(pruned, os.path.join(folder, "pruned.h5"))
        raise


def _run_one(name, timeout):
    started = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, os.path.abspath(__file__), "--one", name], capture_output=True,
                              text=True, timeout=timeout, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    except subprocess.TimeoutExpired as exc:
        out, err = (s.decode(errors="replace") if isinstance(s, bytes) else (s or "") for s in (exc.stdout, exc.stderr))
        for line in reversed(out.splitlines()):  # finished, but the process did not exit in time
            if line.startswith("{"):
                return json.loads(line)
        stages = [line[len("stage "):] for line in err.splitlines() if line.startswith("stage ")]
        return {"name": name, "outcome": "timeout", "seconds": time.perf_counter() - started,
                "error": f"after {'; '.join(stages)}" if stages else "before the model was built"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
    return {"name": name, "outcome": "crash", "error": tail[:300], "seconds": time.perf_counter() - started}


def section(rows, command):
    counts = {}
    for r in rows:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    lines = [
        "## The layer registry on the keras.applications catalogue",
        "",
        f"Command: `{command}`. Every architecture constructor of `tf_keras.applications`, weights=None, 10 classes, "
        "no classifier activation, the smallest of 32 / 75 / 96 / 128 / 224 / 331 pixels it accepts, each in its own "
        "process on 2 shared CPU cores. keep 1.0: largest |difference| between the outputs of `tfmc.prune(model, 1.0)` "
        "and the model's on 2 seeded random images; keep 0.5: `tfmc.prune(model, 0.5)` (channels in multiples of 8), "
        "saved as .keras and loaded back (the loaded outputs must equal the pruned model's exactly). Outcome: "
        + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) + f" of {len(rows)}.",
        "",
        "| architecture | input | groups (prunable) | MACs | MACs at keep 0.5 | keep 1.0 max diff | loaded max diff | "
        "seconds | outcome |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        macs = f"{r['macs']:,}" if "macs" in r else "-"
        after = f"{r['pruned_macs']:,} ({r['pruned_macs'] / r['macs']:.3f})" if "pruned_macs" in r else "-"
        diff1 = f"{r['keep1_max_abs_diff']:.1e}" if "keep1_max_abs_diff" in r else "-"
        diff2 = f"{r['load_max_abs_diff']:.1e}" if "load_max_abs_diff" in r else "-"
        groups = f"{r['groups']} ({r['prunable']})" if "groups" in r else "-"
        outcome = r["outcome"] + (f", saved as {r['format']}" if "format" in r else "")
        lines.append(f"| {r['name']} | {r.get('size', '-')} | {groups} | {macs} | {after} | {diff1} | {diff2} | "
                     f"{r['seconds']:.0f} | {outcome} |")
    reasons = {}
    for r in rows:
        for reason in r.get("reasons", []):
            kind = reason.split(" '")[0].split(" of layer")[0]
            reasons.setdefault(kind, set()).add(r["name"])
    lines += ["", "Why frozen groups are frozen (reason, first words; architectures):", ""]
    for kind, names in sorted(reasons.items(), key=lambda kv: -len(kv[1])):
        lines.append(f"- {kind}: {len(names)} architectures")
    failures = [r for r in rows if r["outcome"] not in ("pruned", "frozen")]
    if failures:
        lines += ["", "Not passing:", ""]
        lines += [f"- {r['name']}: {r['outcome']} {r.get('error', '')}" for r in failures]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", help="check one architecture and print its findings as JSON (used internally)")
    parser.add_argument("--only", help="comma-separated architectures (default: all)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per architecture")
    parser.add_argument("--jsonl", default="bench/.cache/catalogue.jsonl", help="findings, one line per architecture")
    parser.add_argument("--no-write", action="store_true", help="do not write BENCHMARKS.md")
    parser.add_argument("--report", action="store_true",
                        help="write the section from the architectures --jsonl already holds, running none")
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(check(args.one)), flush=True)
        os._exit(0)  # TensorFlow's teardown of a large graph can outlast the timeout (seen on DenseNet201)
    names = args.only.split(",") if args.only else list(constructors())
    done = {}
    if os.path.exists(args.jsonl):  # resume: architectures already checked by this command are kept
        with open(args.jsonl, encoding="utf-8") as f:
            done = {r["name"]: r for r in map(json.loads, f)}
    rows = []
    for name in names:
        if args.report:
            if name in done:
                rows.append(done[name])
            continue
        if name not in done or done[name]["outcome"] == "timeout":  # a timed-out one is tried again
            done[name] = _run_one(name, args.timeout)
            with open(args.jsonl, "a", encoding="utf-8") as f:
                f.write(json.dumps(done[name]) + "\n")
            print(f"{name}: {done[name]['outcome']} ({done[name]['seconds']:.0f} s)", flush=True)
        rows.append(done[name])
    if not args.no_write and not args.only:
        from benchmarks_md import write_section

        missing = [n for n in names if n not in done]
        text = section(rows, "python bench/bench_catalogue.py")
        if missing:
            text += "\n\nNot run (out of time on this machine): " + ", ".join(missing) + "."
        write_section("catalogue", text)


if __name__ == "__main__":
    main()
