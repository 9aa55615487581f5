"""Time a .tflite on an Android phone over adb with a user-supplied benchmark_model binary."""
import os
import posixpath
import shlex
import shutil
import subprocess

from tflite_bench.host import benchmark_flags, check_counts, check_model_path, parse_tool_output, tail
from tflite_bench.result import BenchError

REMOTE_DIR = "/data/local/tmp"


class Adb:
    """Runs adb commands against one device; every failure becomes a BenchError quoting adb."""

    def __init__(self, adb="adb", serial=None, timeout=600):
        found = shutil.which(adb)
        if found is None:
            raise BenchError(
                f"adb not found ({adb!r} is not on PATH); install Android platform-tools "
                "and make sure `adb devices` lists your phone"
            )
        self.adb = found
        self.timeout = timeout
        self.serial = self._choose_device(serial)

    def _run(self, args, what):
        command = [self.adb] + args
        try:
            return subprocess.run(command, capture_output=True, text=True, timeout=self.timeout)
        except OSError as exc:
            raise BenchError(f"could not start adb ({self.adb}): {exc}") from exc
        except subprocess.TimeoutExpired:
            raise BenchError(f"adb {what} did not finish within {self.timeout} s") from None

    def devices(self):
        """Serials of the attached devices in the ``device`` state, and {serial: state} of the others."""
        completed = self._run(["devices"], "devices")
        if completed.returncode != 0:
            raise BenchError(f"`adb devices` failed: {tail(completed.stdout + completed.stderr)}")
        ready, other = [], {}
        for line in completed.stdout.splitlines():
            parts = line.split()
            if len(parts) < 2 or line.startswith(("List of devices", "*")):
                continue
            if parts[1] == "device":
                ready.append(parts[0])
            else:
                other[parts[0]] = parts[1]
        return ready, other

    def _choose_device(self, serial):
        ready, other = self.devices()
        if serial is not None:
            if serial in ready:
                return serial
            if serial in other:
                raise BenchError(f"device {serial!r} is {other[serial]!r}, not ready (adb devices)")
            raise BenchError(f"device {serial!r} is not attached; attached: {', '.join(ready) or 'none'}")
        if not ready:
            extra = f" ({', '.join(f'{s}: {st}' for s, st in other.items())})" if other else ""
            raise BenchError(f"no Android device attached{extra}; connect one with USB debugging on (adb devices)")
        if len(ready) > 1:
            raise BenchError(f"several Android devices attached ({', '.join(ready)}); choose one with --serial")
        return ready[0]

    def __call__(self, *args, what=None):
        """Run ``adb -s SERIAL ARGS...``; a non-zero exit raises with adb's own message."""
        completed = self._run(["-s", self.serial] + list(args), what or args[0])
        if completed.returncode != 0:
            raise BenchError(f"adb {what or args[0]} failed: {tail(completed.stdout + completed.stderr)}")
        return completed

    def shell(self, command, what=None):
        """Run ``command`` (one string, already quoted) in the device shell, keeping its exit status."""
        return self._run(["-s", self.serial, "shell", command], what or "shell")


def run_android(path, binary, *, serial=None, threads=4, runs=50, warmup=1, taskset=None, use_gpu=False,
                use_nnapi=False, extra_args=(), adb="adb", timeout=600):
    """Push ``path`` and ``binary`` to the phone, run benchmark_model there, parse, clean up.

    The model and binary go to /data/local/tmp (the one place shell may run
    binaries from on stock Android); the binary is made executable, run as
    ``[taskset MASK] benchmark_model --graph=... --num_threads=...`` and both
    files are removed afterwards, also when the run fails.

    Args:
      path: the .tflite file on this machine.
      binary: a benchmark_model executable built for the phone
        (android_aarch64 or android_arm).
      serial: which device (as ``adb devices`` names it); needed when several
        are attached.
      threads, runs, warmup: --num_threads, --num_runs, --warmup_runs.
      taskset: a CPU mask in hex (e.g. ``f0``, the big cores on many phones).
      use_gpu, use_nnapi: run on the GPU delegate / NNAPI.
      extra_args: further benchmark_model flags.
      adb: the adb executable's name or path.
      timeout: seconds each adb call may take.

    Returns:
      Result with ``source="android"``.

    Raises:
      BenchError: adb is not installed, no or several devices are attached
        (without --serial), the binary or model is missing, a push fails or
        the run fails (the message shows benchmark_model's own last lines).

    Example:
      >>> run_android("m.tflite", "android_aarch64_benchmark_model", taskset="f0")  # doctest: +SKIP
    """
    path = check_model_path(path)
    binary = os.fspath(binary)
    if not os.path.isfile(binary):
        raise BenchError(f"benchmark_model binary {binary!r} does not exist (build or download it for the phone)")
    check_counts(threads, runs, warmup)
    if taskset is not None and not _is_hex_mask(taskset):
        raise BenchError(f"taskset mask must be hexadecimal like 'f0', got {taskset!r}")
    device = Adb(adb, serial=serial, timeout=timeout)
    remote_model = posixpath.join(REMOTE_DIR, os.path.basename(path))
    remote_binary = posixpath.join(REMOTE_DIR, os.path.basename(binary))
    pushed = []
    try:
        for local, remote in ((path, remote_model), (binary, remote_binary)):
            device("push", local, remote, what=f"push {os.path.basename(local)}")
            pushed.append(remote)
        device("shell", f"chmod +x {shlex.quote(remote_binary)}", what="chmod")
        command = [remote_binary] + benchmark_flags(
            graph=remote_model, threads=threads, runs=runs, warmup=warmup,
            use_gpu=use_gpu, use_nnapi=use_nnapi, extra_args=extra_args)
        if taskset is not None:
            command = ["taskset", str(taskset)] + command
        completed = device.shell(" ".join(shlex.quote(part) for part in command), what="benchmark_model")
        result = parse_tool_output(completed, f"benchmark_model on {device.serial}")
    finally:
        if pushed:
            device.shell("rm -f " + " ".join(shlex.quote(p) for p in pushed), what="rm")
    result.source = "android"
    return result


def _is_hex_mask(mask):
    text = str(mask).lower().removeprefix("0x")
    return bool(text) and all(c in "0123456789abcdef" for c in text)
