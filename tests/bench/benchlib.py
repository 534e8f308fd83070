"""Helpers the bench scripts of tests/bench/ share.

Each script imports this module from its own directory:

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import benchlib as lib

What is here:

* the lab: its settings (`load_lab_env`, /var/lib/mab-lab/lab.env), Debian's
  docker CLI against one engine (`docker_on`, tests/lab/docker-on), a check
  that the registry and the engines answer (`check_lab`), and cleaning up
  (`remove_bench_images`, `clear_caches`);
* the mab binary (`mab_binary`): `--mab PATH`, else a release build that
  cargo refreshes when the sources changed, or a debug build with `--smoke`;
* one `mab build --progress json` under GNU `time -v` (`run_mab`), every
  stderr line stamped with its arrival time, giving wall time, CPU time,
  peak RSS and the events;
* figures: `seconds` (median, min–max), `ratio`, the machine the figures
  were taken on (`machine`, with the commit), and writing a section
  between a script's own markers of docs/performance.md (`write_section`,
  `markers`);
* the command line every script shares (`add_arguments`, `main`): `--runs N`,
  `--mab PATH`, and `--smoke`.

The `--smoke` convention (tests/bench/all --smoke, which tests/run calls):
one round, small sizes, no assertions on time, well under a minute per
script, nothing written into docs/ (only target/bench/), and a non-zero exit
when anything the script runs fails (no repeats of a failed run).

Needs Python 3.11 or newer (tomllib in the scripts).
"""

import argparse
import concurrent.futures
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LAB_DIR = Path(os.environ.get("MAB_LAB_DIR", "/var/lib/mab-lab"))
EXAMPLE = REPO / "examples" / "greeter"
RUNNERS_FILE = REPO / "runners.toml"
DOC = REPO / "docs" / "performance.md"
WORK = REPO / "target" / "bench"  # scratch of every bench script (git-ignored)
DOCKER_ON = REPO / "tests" / "lab" / "docker-on"
GNU_TIME = Path("/usr/bin/time")

# Every image a bench script creates lives under this prefix (registry and engines).
BENCH_PREFIX = "127.0.0.1:5000/bench/"

# The longest a cold series waits for one engine's `docker builder prune -af`.
PRUNE_SECONDS = 300

# A failed `mab build` in a full run is recorded and repeated, at most this often in a row.
ATTEMPTS = 3

# The longest one command of a bench may take (`mab build` included) before its
# process group is killed and the bench stops: a hung engine or sshd must not hang CI.
COMMAND_SECONDS = 600

# The hint of everything the lab provides (tools, busybox binaries, QEMU handlers).
LAB_HINT = "run tests/lab/up (tests/lab/status says which part is down)"


def log(message):
    print(f"bench: {message}", file=sys.stderr, flush=True)


class BenchError(Exception):
    """A failure that ends the benchmark: one sentence, maybe a hint."""

    def __init__(self, message, hint=None):
        super().__init__(message)
        self.hint = hint


def die(message, hint=None):
    raise BenchError(message, hint)


def shown(path):
    """`path` relative to the repository when it is inside it."""
    path = Path(path)
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def in_parallel(function, items):
    """Calls function(*item) for every item at once; returns the results in order.

    An exception in any call is raised here, after all calls ended.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(items))) as pool:
        futures = [pool.submit(function, *item) for item in items]
    return [future.result() for future in futures]


def stopped(command, timeout):
    """The BenchError of a command killed after `timeout` seconds."""
    return BenchError(f"`{' '.join(map(str, command))}` took more than {timeout} s and was stopped",
                      "another build may be holding that engine or host (the lab is shared); "
                      "try again when it is quiet")


def call(command, timeout=COMMAND_SECONDS, input=None, capture=True, **kwargs):
    """Runs a command in a process group of its own; returns its CompletedProcess (text).

    After `timeout` seconds the whole group is killed (a pipeline, or the docker
    CLI under tests/lab/docker-on, with it) and a BenchError names the command.
    `capture`: collect stdout and stderr (else they go to this script's).
    """
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE} if capture else {}
    process = subprocess.Popen(command, text=True, start_new_session=True,
                               stdin=subprocess.PIPE if input is not None else None, **pipes, **kwargs)
    try:
        stdout, stderr = process.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise stopped(command, timeout) from None
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def run(command, timeout=COMMAND_SECONDS, **kwargs):
    """Runs a command that must succeed within `timeout` seconds; returns its stdout."""
    result = call(command, timeout=timeout, **kwargs)
    if result.returncode != 0:
        die(f"`{' '.join(map(str, command))}` exited with {result.returncode}:\n{result.stderr.strip()}")
    return result.stdout.strip()


def docker_on(host, *args, check=True, timeout=COMMAND_SECONDS):
    """Debian's docker CLI against one engine of the lab (`local` or a runner host); returns stdout.

    `check=False`: a failure is ignored (a timeout is not)."""
    command = [str(DOCKER_ON), host, *args]
    if check:
        return run(command, cwd=REPO, timeout=timeout)
    return call(command, cwd=REPO, timeout=timeout).stdout.strip()


# --- the lab -----------------------------------------------------------------


def load_lab_env():
    """The lab's settings (KEY=VALUE lines of lab.env) as a dict."""
    env_file = LAB_DIR / "lab.env"
    if not env_file.exists():
        die(f"the lab is not up ({env_file} is missing)", "run tests/lab/up")
    values = {}
    for line in env_file.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and re.fullmatch(r"[A-Z][A-Z0-9_]*", key):
            values[key] = value
    return values


def engines(platforms, runners_file=RUNNERS_FILE):
    """(host, platform, network) per platform: the first runner of `runners_file` that lists it,
    its host (`local` or an ssh alias tests/lab/docker-on knows) and its `network` key."""
    runners = tomllib.loads(Path(runners_file).read_text())["runner"]
    found = []
    for platform in platforms:
        runner = next((r for r in runners if platform in r["platforms"]), None)
        if runner is None:
            die(f"no runner in {shown(runners_file)} lists {platform}")
        found.append((runner["host"], platform, runner.get("network", "default")))
    return found


def stage_example(lab, platforms):
    """Copies the lab's busybox of each platform's architecture into examples/greeter/busybox/
    (git-ignored, as tests/lab/demo does), for a build of the example."""
    busybox = EXAMPLE / "busybox"
    busybox.mkdir(exist_ok=True)
    for architecture in sorted({platform.split("/")[1] for platform in platforms}):
        source = Path(lab["BUSYBOX_DIR"]) / architecture
        if not source.exists():
            die(f"the lab has no busybox for {architecture} ({source} is missing)", LAB_HINT)
        shutil.copy2(source, busybox / architecture)


def example_image():
    """examples/greeter's [image] table (read only: `stage_example` readies a build). Stops on
    a top-level table other than [image] and [tags] (the bench manifests copy neither
    [verify] nor [test], so they would measure another build than the example's)."""
    project = tomllib.loads((EXAMPLE / "mab.toml").read_text())
    unknown = sorted(set(project) - {"image", "tags"})
    if unknown:
        die(f"{EXAMPLE / 'mab.toml'} has [{'], ['.join(unknown)}], which the bench manifests do not copy",
            "teach the bench manifests (benchlib.manifest_text) to copy it")
    return project["image"]


def manifest_text(name, context, platforms, target=None, args=None, comment="a bench project"):
    """A mab.toml [image] table (with [image.args]) for a bench manifest; its `context`
    points at the project's directory, so the manifest can live under target/bench/."""
    lines = [
        f"# Written by the benches of tests/bench/: {comment}.",
        "[image]",
        f'name = "{name}"',
        f'context = "{context}"',
        "platforms = [" + ", ".join(f'"{p}"' for p in platforms) + "]",
    ]
    if target:
        lines.append(f'target = "{target}"')
    if args:
        lines.append("[image.args]")
        lines += [f'{key} = "{value}"' for key, value in args.items()]
    return "\n".join(lines) + "\n"


def require(missing):
    """Stops when anything the lab should provide is missing: `missing` is a list of
    descriptions ("GNU time (/usr/bin/time)"); the benches install nothing themselves."""
    if missing:
        die(f"the lab lacks what the bench needs: {'; '.join(missing)}", LAB_HINT)


def require_root(tools=(GNU_TIME,)):
    """Root (the engines and nftables need it) and the programs in `tools` (paths or names on PATH;
    GNU time by default, for the peak RSS), which tests/lab/up installs."""
    if os.geteuid() != 0:
        die("the benchmark drives the lab's engines and must run as root")
    require([f"{tool} (tests/lab/up installs it)" for tool in tools
             if not (Path(tool).exists() if os.sep in str(tool) else shutil.which(str(tool)))])


def check_lab(hosts):
    """The registry and every engine in `hosts` answer, or a hint to start the lab."""
    hint = LAB_HINT
    registry = "http://" + BENCH_PREFIX.split("/")[0] + "/v2/"
    try:
        urllib.request.urlopen(registry, timeout=5).close()
    except OSError as error:
        die(f"the lab registry does not answer at {registry}: {error}", hint)
    for host in hosts:
        answer = call([str(DOCKER_ON), host, "version"], cwd=REPO, timeout=30)
        if answer.returncode != 0:
            die(f"the engine of {host} does not answer: {answer.stderr.strip()}", hint)


def remove_bench_images(host):
    """Removes every image reference under the bench prefix on one engine.

    By reference, never by image ID: an ID can also carry other tests' tags.
    """
    listing = docker_on(host, "images", "--digests", "--format", "{{.Repository}}\t{{.Tag}}\t{{.Digest}}")
    references = []
    for line in listing.splitlines():
        repository, tag, digest = line.split("\t")
        if not repository.startswith(BENCH_PREFIX):
            continue
        if tag != "<none>":
            references.append(f"{repository}:{tag}")
        elif digest != "<none>":
            references.append(f"{repository}@{digest}")
    if references:
        docker_on(host, "rmi", *references, check=False)


def clear_caches(hosts):
    """Cold start: prune the build cache and remove the bench images on every engine in `hosts`.

    The build caches are shared with the tests: only a cold series calls this.
    """
    def one(host):
        docker_on(host, "builder", "prune", "-af", timeout=PRUNE_SECONDS)
        remove_bench_images(host)

    in_parallel(one, [(host,) for host in hosts])


# --- the lab registry ------------------------------------------------------------


def registry_request(repository, path, method="GET", accept=None):
    """One request to the lab registry's API for `repository` (`host/name`):
    its answer's body and headers."""
    host, name = repository.split("/", 1)
    request = urllib.request.Request(f"http://{host}/v2/{name}/{path}", method=method)
    if accept:
        request.add_header("Accept", accept)
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.read(), answer.headers


def registry_tags(repository):
    """The tags of `repository` in the lab registry (none when it has none)."""
    try:
        body, _ = registry_request(repository, "tags/list")
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return []
        raise
    return sorted(json.loads(body).get("tags") or [])


MANIFEST_TYPES = ", ".join([
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
])


def delete_manifests(repository, tags=None):
    """Deletes the manifests `tags` name in `repository` (every tag's when None), by digest:
    the lab's registry deletes by digest, and every tag of a digest goes with it. The blobs
    go at the registry's next garbage collection. Returns the digests deleted."""
    digests = []
    for tag in registry_tags(repository) if tags is None else tags:
        try:
            _, headers = registry_request(repository, f"manifests/{tag}", "HEAD", MANIFEST_TYPES)
        except urllib.error.HTTPError:
            continue  # already gone with a digest deleted before
        digest = headers.get("Docker-Content-Digest")
        if digest and digest not in digests:
            digests.append(digest)
    deleted = []
    for digest in digests:
        try:
            registry_request(repository, f"manifests/{digest}", "DELETE")
            deleted.append(digest)
        except urllib.error.HTTPError as error:
            # A list deleted first may have taken an image's last reference.
            log(f"{repository}@{digest} not deleted: {error.code} {error.reason}")
    return deleted


# --- the mab binary ----------------------------------------------------------


def mab_binary(args):
    """The mab to measure: `--mab PATH`, else $MAB_BENCH_MAB (tests/bench/all --mab sets it),
    else a fresh build (release; debug with `--smoke`).

    cargo decides whether anything changed, so an up-to-date binary costs nothing.
    """
    given = args.mab or (Path(os.environ["MAB_BENCH_MAB"]) if os.environ.get("MAB_BENCH_MAB") else None)
    if given is not None:
        mab = given.resolve()
        if not os.access(mab, os.X_OK):
            die(f"the mab to measure, {given}, is not an executable file")
        return mab
    profile = [] if args.smoke else ["--release"]
    log(f"cargo build {' '.join(profile + ['-p', 'mab'])}")
    if subprocess.run(["cargo", "build", *profile, "-p", "mab"], cwd=REPO).returncode != 0:
        die("cargo build -p mab failed", "the working tree must compile")
    return REPO / "target" / ("debug" if args.smoke else "release") / "mab"


class MabFailed(Exception):
    """`mab build` exited with an error: its exit code, its error message and log."""

    def __init__(self, code, message, log_file):
        super().__init__(f"mab build exited with {code}: {message} (log: {shown(log_file)})")
        self.log_file = log_file


def peak_rss_mib(usage_text):
    """The "Maximum resident set size" of a GNU `time -v` report, in MiB."""
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", usage_text)
    if not match:
        die("GNU time wrote no \"Maximum resident set size\"", f"is {GNU_TIME} GNU time (apt package `time`)?")
    return int(match.group(1)) / 1024


def cpu_seconds(usage_text):
    """User + system seconds of a GNU `time -v` report."""
    return sum(float(value) for value in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", usage_text))


def run_mab(mab, arguments, log_file, lab, env=None, timeout=COMMAND_SECONDS):
    """One `mab build --progress json ARGUMENTS` under GNU `time -v`, run from the repository.

    Returns a dict: `wall` (seconds, start to exit), `cpu` (user + system
    seconds of mab), `rss_mib` (peak RSS), and `events`: every JSON event
    line of stderr with an `at` key added, the seconds since the start at
    which it arrived. Raises MabFailed on a non-zero exit. The log (stamped
    stderr, then stdout) is written to `log_file`. After `timeout` seconds
    mab's process group is killed and a BenchError ends the bench.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    usage_file = log_file.with_suffix(".time")
    command = [str(GNU_TIME), "-v", "-o", str(usage_file), str(mab), "build", "--progress", "json", *arguments]
    env = {**os.environ, "HOME": lab["DEMO_HOME"], **(env or {})}
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    killed = []

    def kill():
        killed.append(True)
        os.killpg(process.pid, signal.SIGKILL)

    timer = threading.Timer(timeout, kill)
    timer.start()
    stdout = []
    reader = threading.Thread(target=lambda: stdout.append(process.stdout.read()))
    reader.start()
    stamped = [(time.monotonic() - started, line.rstrip("\n")) for line in process.stderr]
    process.wait()
    reader.join()
    timer.cancel()
    wall = time.monotonic() - started
    log_file.write_text("".join(f"{at:8.3f} {line}\n" for at, line in stamped) + "stdout: " + "".join(stdout))
    events = []
    for at, line in stamped:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append({**event, "at": at})
    if killed:
        error = stopped(command, timeout)
        raise BenchError(f"{error} (log: {shown(log_file)})", error.hint)
    if process.returncode != 0:
        outcome = next((event for event in events if event.get("event") == "result"), {})
        message = (outcome.get("error") or {}).get("message") or " / ".join(line for _, line in stamped[-3:])
        # Why each job failed, as the engine said it: the result names only the build.
        causes = [event.get("message", "") for event in events if event.get("event") == "job_failed"]
        if causes:
            message += ": " + "; ".join(causes)
        # A repeated run writes the same log file: keep this one apart.
        kept = log_file.with_name(f"{log_file.stem}.failed-{int(time.time())}.log")
        shutil.copyfile(log_file, kept)
        raise MabFailed(process.returncode, message, kept)
    usage = usage_file.read_text()
    return {"wall": wall, "cpu": cpu_seconds(usage), "rss_mib": peak_rss_mib(usage), "events": events}


def repeated(attempt, smoke, failures, what):
    """Calls attempt(number) until it returns without MabFailed: at most ATTEMPTS times,
    once with `smoke` (a failure ends the smoke run). Each failure is appended to
    `failures` as (what, message)."""
    tries = 1 if smoke else ATTEMPTS
    for number in range(1, tries + 1):
        try:
            return attempt(number)
        except MabFailed as failure:
            failures.append((what, str(failure)))
            if smoke:
                die(f"{what}: {failure}")
            log(f"{what}: {failure}; repeating the run")
    die(f"{what}: mab build failed {ATTEMPTS} times in a row", f"see the logs in {shown(WORK)}")


# --- figures -------------------------------------------------------------------


def seconds(values):
    """`median (min–max)` of a list of seconds."""
    values = list(values)
    return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"


def median(values):
    return statistics.median(list(values))


def loadavg():
    return Path("/proc/loadavg").read_text().split()[0]


def cpu_times():
    """The machine's CPU seconds since boot from /proc/stat's `cpu` line:
    {"busy": user + system + irq + softirq, "nice": time in niced
    (low-priority) processes, "all": every column but guest time}."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    tick = os.sysconf("SC_CLK_TCK")
    return {"busy": (user + system + irq + softirq) / tick, "nice": nice / tick,
            "all": sum(fields) / tick}


def cpu_share_line(start):
    """A bullet line with how busy the machine's CPUs were since `start`
    (a `cpu_times()`): at normal priority, and in niced processes beside
    the bench, as shares of all CPU time."""
    end = cpu_times()
    spent = {key: end[key] - start[key] for key in end}
    total = spent["all"] or 1.0
    return (f"- CPU time of the machine while the bench ran: {spent['busy'] / total:.0%} busy at normal "
            f"priority (the bench, the lab), {spent['nice'] / total:.0%} in niced (low-priority) "
            f"processes beside it")


def host_facts():
    """Facts about this machine and the commit measured, without the lab's engines."""
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    commit = run(["git", "rev-parse", "--short=8", "HEAD"], cwd=REPO)
    # Uncommitted changes to what goes into the binary, if any.
    dirty = run(["git", "status", "--porcelain", "--", "crates", "Cargo.toml", "Cargo.lock"], cwd=REPO)
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": run(["uname", "-sr"]),
        "memory_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30,
        "load": os.getloadavg()[0],
        "cpu_times": cpu_times(),
        "commit": commit + (" (with uncommitted changes)" if dirty else ""),
        "rustc": run(["rustc", "--version"]),
    }


def machine(lab, hosts):
    """`host_facts`, with the versions of the lab's engines `hosts` and of the docker CLI."""
    facts = host_facts()
    facts["engines"] = {host: docker_on(host, "version", "--format", "{{.Server.Version}}")
                        for host in hosts}
    facts["client"] = run([lab["DOCKER_CLI"], "version", "--format", "{{.Client.Version}}"])
    return facts


def machine_lines(facts):
    """The "Machine" bullet lines of a section."""
    engines = ", ".join(f"{host} {version}" for host, version in facts["engines"].items())
    return [
        f"- {facts['nproc']} CPUs, {facts['cpu']}, {facts['memory_gib']:.1f} GiB, {facts['kernel']}",
        f"- Docker Engine {engines} (all on this machine); docker CLI {facts['client']}; {facts['rustc']}",
        cpu_share_line(facts["cpu_times"]),
    ]


# --- docs/performance.md -------------------------------------------------------


def markers(name):
    """The begin and end markers of bench script `name` in docs/performance.md."""
    return f"<!-- bench-{name}:begin -->", f"<!-- bench-{name}:end -->"


def write_section(name, lines, doc=DOC):
    """Writes `lines` between the markers of bench `name` in `doc` (appended when missing).

    The prose outside the markers is kept.
    """
    begin_marker, end_marker = markers(name)
    section = "\n".join([begin_marker, f"<!-- Written by tests/bench/{name}; edits between these markers "
                         "are overwritten. -->", "", *lines, end_marker]) + "\n"
    text = doc.read_text() if doc.exists() else "# Performance\n\n"
    begin, end = text.find(begin_marker), text.find(end_marker)
    if begin != -1 and end > begin:
        text = text[:begin] + section + text[end + len(end_marker):].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    doc.parent.mkdir(exist_ok=True)
    doc.write_text(text)
    log(f"wrote {shown(doc)}")


# --- the command line ----------------------------------------------------------


def add_arguments(parser, runs):
    """`--runs N` (default `runs`), `--mab PATH` and `--smoke`."""
    parser.add_argument("--runs", type=int, default=runs, help=f"timed runs per series (default {runs})")
    parser.add_argument("--mab", type=Path,
                        help="the mab binary to measure (default: a fresh target/release/mab, "
                             "target/debug/mab with --smoke)")
    parser.add_argument("--smoke", action="store_true",
                        help="one round, small sizes, nothing written into docs/; exit 1 when anything fails")


def main(doc, benchmark, runs=5, configure=None):
    """Parses the shared options (and `configure(parser)`'s), runs benchmark(args).

    A BenchError ends the script with exit 1, its message and hint on stderr.
    """
    parser = argparse.ArgumentParser(description=doc.split("\n", 1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, runs)
    if configure:
        configure(parser)
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.smoke:
        args.runs = 1
    try:
        benchmark(args)
    except BenchError as error:
        print(f"bench: error: {error}", file=sys.stderr)
        if error.hint:
            print(f"hint: {error.hint}", file=sys.stderr)
        sys.exit(1)
