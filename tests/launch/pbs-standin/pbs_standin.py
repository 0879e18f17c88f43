#!/usr/bin/env python3
"""A PBS stand-in for tests: enough of PBS Pro's (and Torque's) qsub, qstat and qdel for
acme-launch, without a PBS server. Jobs run on this host as detached background processes.

    python3 pbs_standin.py qsub|qstat|qdel ARGS...    (the qsub/qstat/qdel wrappers do this)

State: one JSON file per job in $PBS_STANDIN_DIR (required). Test switches (environment):
    PBS_STANDIN_HOLD=1         qsub queues the job but never starts it (job_state Q)
    PBS_STANDIN_QSTAT_FAIL=1   qstat fails as if the server were down (exit 1)
    PBS_STANDIN_REJECT=MSG     qsub refuses the job: "qsub: MSG" on stderr, exit 1
See README.md next to this file for what is and is not copied from PBS.
"""

import fcntl
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time

SERVER = "standin"
QUEUE = "workq"
UNKNOWN_EXIT = 153        # PBSE_UNKJOBID (15001) mod 256: what PBS Pro's qstat/qdel exit with
HOLD_COMMENT = "Not Running: Insufficient amount of resource: ncpus (R: 64 A: 2 T: 2)"
DELETED_EXIT = 271        # PBS Pro: Exit_status of a job killed by qdel (256 + SIGTERM)


class Fail(Exception):
    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


# --- state ------------------------------------------------------------------------------------
def state_dir():
    d = os.environ.get("PBS_STANDIN_DIR", "")
    if not d:
        raise Fail("pbs_standin: PBS_STANDIN_DIR is not set (the directory where the PBS "
                   "stand-in keeps its jobs); set it to a writable directory", 2)
    os.makedirs(d, exist_ok=True)
    return d


class Lock:
    """An exclusive lock on the state directory for the whole command."""

    def __enter__(self):
        self.f = open(os.path.join(state_dir(), ".lock"), "a+")
        fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


def job_path(num):
    return os.path.join(state_dir(), "%d.json" % num)


def save(job):
    p = job_path(job["num"])
    tmp = p + ".tmp"
    with open(tmp, "w") as f:
        json.dump(job, f, indent=1, sort_keys=True)
    os.rename(tmp, p)


def load(num):
    try:
        with open(job_path(num)) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def all_jobs():
    nums = []
    for name in os.listdir(state_dir()):
        m = re.fullmatch(r"(\d+)\.json", name)
        if m:
            nums.append(int(m.group(1)))
    return [j for j in (load(n) for n in sorted(nums)) if j]


def next_number():
    p = os.path.join(state_dir(), "next_id")
    try:
        with open(p) as f:
            n = int(f.read().strip() or "0")
    except FileNotFoundError:
        n = 0
    n = max(n + 1, 100)
    with open(p, "w") as f:
        f.write("%d\n" % n)
    return n


def ctime_str(t):
    return time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(t))


def run_comment(t, host, ncpus):
    return "Job run at %s on (%s:ncpus=%d)" % (time.strftime("%a %b %d at %H:%M", time.localtime(t)),
                                               host, ncpus)


# --- processes --------------------------------------------------------------------------------
def proc_start_ticks(pid):
    """Start time of pid (clock ticks since boot), or None if it is gone or a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def alive(sub):
    pid = sub.get("pid")
    return bool(pid) and proc_start_ticks(pid) == sub.get("ticks")


def refresh(job):
    """Running sub-jobs whose process is gone become finished. Returns True if job changed."""
    changed = False
    for sub in job["subjobs"].values():
        if sub["state"] == "R" and not alive(sub):
            sub["state"] = "F"
            sub["end"] = time.time()
            try:
                with open(sub["status_file"]) as f:
                    sub["exit_status"] = int(f.read().strip())
            except (OSError, ValueError):
                sub["exit_status"] = DELETED_EXIT if sub.get("deleted") else 265  # 256 + SIGKILL
            sub["comment"] = sub["comment"].split(" and ")[0] + " and finished"
            changed = True
    return changed


def start_subjob(job, idx, sub):
    env = dict(os.environ)
    for k in ("PBS_STANDIN_HOLD", "PBS_STANDIN_QSTAT_FAIL", "PBS_STANDIN_REJECT"):
        env.pop(k, None)
    c = job["ncpus"]
    host = socket.gethostname()
    nodefile = os.path.join(state_dir(), "%s.nodes" % sub["id"])
    with open(nodefile, "w") as f:
        f.write((host + "\n") * c)
    env.update({
        "PBS_JOBID": sub["id"], "PBS_JOBNAME": job["name"], "PBS_O_WORKDIR": job["workdir"],
        "PBS_O_HOST": host, "PBS_O_QUEUE": job["queue"], "PBS_QUEUE": job["queue"],
        "PBS_O_HOME": os.environ.get("HOME", "/"), "PBS_O_PATH": os.environ.get("PATH", ""),
        "PBS_ENVIRONMENT": "PBS_BATCH", "PBS_NODEFILE": nodefile, "PBS_JOBDIR": os.environ.get("HOME", "/"),
        "NCPUS": str(c), "PBS_NCPUS": str(c), "PBS_NP": str(c), "PBS_NUM_PPN": str(c), "PBS_NUM_NODES": "1",
        "OMP_NUM_THREADS": str(c), "PBS_SERVER": SERVER,
    })
    if job["array"]:
        env["PBS_ARRAY_INDEX"] = str(idx)        # PBS Pro
        env["PBS_ARRAYID"] = str(idx)            # Torque
        env["PBS_ARRAY_ID"] = job["id"]
    out_path = sub["out"]
    err_path = sub["err"]
    os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
    out = open(out_path, "ab")
    if job["join"]:
        err = subprocess.STDOUT
    else:
        os.makedirs(os.path.dirname(err_path) or ".", exist_ok=True)
        err = open(err_path, "ab")
    # bash runs the script; its exit status lands in status_file (absent if it was killed)
    wrapper = 'bash "$0"; s=$?; echo $s >"$1"; exit $s'
    p = subprocess.Popen(["bash", "-c", wrapper, job["script"], sub["status_file"]],
                         stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env,
                         cwd=os.environ.get("HOME", "/"), start_new_session=True, close_fds=True)
    out.close()
    if err is not subprocess.STDOUT:
        err.close()
    now = time.time()
    sub.update(pid=p.pid, ticks=proc_start_ticks(p.pid), state="R", start=now,
               comment=run_comment(now, host, c))


# --- qsub -------------------------------------------------------------------------------------
QSUB_ARG_OPTS = set("aACceJjklmMNoPpqrRSWtuvze")
QSUB_FLAG_OPTS = set("hVIXfn")


def parse_range(text):
    """'1-4', '1-10:2', '1,3,5-6', '1-8%2' -> sorted list of indices."""
    text = text.split("%")[0]
    out = []
    for part in text.split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+)(?::(\d+))?)?", part.strip())
        if not m:
            raise ValueError(text)
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) else a
        step = int(m.group(3)) if m.group(3) else 1
        if b < a or step < 1:
            raise ValueError(text)
        out.extend(range(a, b + 1, step))
    return sorted(set(out))


def parse_opts(args, opts, where):
    """PBS-style short options into opts (a dict: letter -> list of values). Returns the rest."""
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            return args[i + 1:]
        if not a.startswith("-") or a == "-":
            return args[i:]
        letter = a[1:2]
        if letter in QSUB_ARG_OPTS:
            if len(a) > 2:
                val = a[2:]
            else:
                i += 1
                if i >= len(args):
                    raise Fail("qsub: option requires an argument -- '%s'%s" % (letter, where), 2)
                val = args[i]
            opts.setdefault(letter, []).append(val)
        elif letter in QSUB_FLAG_OPTS:
            opts.setdefault(letter, []).append(True)
        else:
            raise Fail("qsub: invalid option -- '%s'%s\nusage: qsub [-J range] [-N name] "
                       "[-l resource_list] [-o path] [-e path] [-j oe] [-q queue] [-A account] script"
                       % (letter, where), 2)
        i += 1
    return []


def directives(script_text):
    """The options given on '#PBS' lines before the first command line of the script."""
    opts = {}
    for n, line in enumerate(script_text.splitlines(), 1):
        s = line.strip()
        if n == 1 and s.startswith("#!"):
            continue
        if not s:
            continue
        if not s.startswith("#"):
            break
        if s.startswith("#PBS"):
            body = s[4:].split(" #")[0]
            try:
                parse_opts(shlex.split(body), opts, " (in '%s')" % s)
            except ValueError:
                raise Fail("qsub: directive error: %s" % s, 2)
    return opts


def parse_resources(values, res):
    for value in values:
        for item in value.split(","):
            if "=" not in item:
                continue
            key, val = item.split("=", 1)
            key = key.strip()
            if key == "select":                       # PBS Pro: select=1:ncpus=4:mem=2gb
                chunks = val.split(":")
                res["select"] = val
                for c in chunks[1:]:
                    if "=" in c:
                        k, v = c.split("=", 1)
                        res[k] = v
            elif key == "nodes":                      # Torque: nodes=1:ppn=4
                res["nodes"] = val
                for c in val.split(":")[1:]:
                    if "=" in c:
                        k, v = c.split("=", 1)
                        res["ppn" if k == "ppn" else k] = v
            else:
                res[key] = val


def out_path(spec, default_name, workdir):
    if not spec:
        return os.path.join(state_dir(), default_name)
    m = re.match(r"^[A-Za-z0-9._-]+:(/.*)$", spec)         # host:/path
    if m:
        spec = m.group(1)
    if not os.path.isabs(spec):
        spec = os.path.join(workdir, spec)
    if os.path.isdir(spec):
        spec = os.path.join(spec, default_name)
    return spec


def qsub(args):
    reject = os.environ.get("PBS_STANDIN_REJECT")
    state_dir()
    opts = {}
    rest = parse_opts(args, opts, "")
    workdir = os.getcwd()
    if rest:
        script_arg = rest[0]
        try:
            with open(script_arg) as f:
                text = f.read()
        except OSError:
            raise Fail("qsub: script file:: No such file or directory", 2)
    else:
        text = sys.stdin.read()
        script_arg = None
    merged = directives(text)
    for k, v in opts.items():                     # the command line wins over directives
        merged[k] = v
    opts = merged
    if reject:
        raise Fail("qsub: %s" % reject, 1)

    def last(letter, default=None):
        return opts[letter][-1] if letter in opts else default

    rng = last("J") or last("t")
    indices = None
    if rng is not None:
        try:
            indices = parse_range(rng)
        except ValueError:
            raise Fail("qsub: illegal -%s value" % ("J" if "J" in opts else "t"), 2)
    res = {}
    parse_resources(opts.get("l", []), res)
    try:
        ncpus = int(res.get("ncpus") or res.get("ppn") or 1)
    except ValueError:
        raise Fail("qsub: Illegal attribute or resource value Resource_List.ncpus", 1)
    name = last("N") or (os.path.basename(script_arg) if script_arg else "STDIN")

    with Lock():
        num = next_number()
        jid = ("%d[].%s" if indices is not None else "%d.%s") % (num, SERVER)
        script_copy = os.path.join(state_dir(), "%d.script" % num)
        with open(script_copy, "w") as f:
            f.write(text)
        job = {
            "num": num, "id": jid, "name": name, "array": indices is not None,
            "indices": indices or [], "ncpus": ncpus, "resources": res, "queue": last("q", QUEUE),
            "account": last("A"), "workdir": workdir, "script": script_copy,
            "script_arg": script_arg, "join": (last("j") or "n") in ("oe", "eo"),
            "ctime": time.time(), "owner": "%s@%s" % (os.environ.get("USER") or
                                                      os.environ.get("LOGNAME") or "root",
                                                      socket.gethostname()),
            "held": os.environ.get("PBS_STANDIN_HOLD") == "1", "subjobs": {},
        }
        for idx in (indices if indices is not None else [None]):
            sid = jid if idx is None else "%d[%d].%s" % (num, idx, SERVER)
            tag = str(num) if idx is None else "%d.%d" % (num, idx)
            o = last("o")
            e = last("e")
            if idx is not None:
                o = o and o.replace("^array_index^", str(idx))
                e = e and e.replace("^array_index^", str(idx))
            sub = {
                "id": sid, "index": idx, "state": "Q", "pid": None, "ticks": None,
                "comment": HOLD_COMMENT if job["held"] else "",
                "out": out_path(o, "%s.o%s" % (name, tag), workdir),
                "err": out_path(e, "%s.e%s" % (name, tag), workdir),
                "status_file": os.path.join(state_dir(), "%s.exit" % tag),
            }
            job["subjobs"][str(idx) if idx is not None else "-"] = sub
        save(job)
        if not job["held"]:
            for key, sub in job["subjobs"].items():
                start_subjob(job, sub["index"], sub)
            save(job)
    print(jid)
    return 0


# --- job ids ----------------------------------------------------------------------------------
def parse_id(text):
    """'123', '123.standin', '123[]', '123[].host', '123[4].host' -> (num, index or None)."""
    m = re.fullmatch(r"(\d+)(?:\[(\d*)\])?(?:\..*)?", text.strip())
    if not m:
        return None, None
    return int(m.group(1)), (int(m.group(2)) if m.group(2) else None)


def find(text):
    num, idx = parse_id(text)
    if num is None:
        return None, None
    job = load(num)
    if job is None:
        return None, None
    if idx is not None and (not job["array"] or str(idx) not in job["subjobs"]):
        return None, None
    return job, idx


# --- qstat ------------------------------------------------------------------------------------
def parent_state(job):
    states = [s["state"] for s in job["subjobs"].values()]
    if all(s == "F" for s in states):
        return "F"
    if all(s == "Q" for s in states):
        return "Q"
    return "B"


def fmt_res(job, lines):
    r = job["resources"]
    lines.append("    Resource_List.ncpus = %d" % job["ncpus"])
    for k in ("mem", "walltime", "select", "nodes"):
        if k in r:
            lines.append("    Resource_List.%s = %s" % (k, r[k]))


def parent_block(job):
    st = parent_state(job)
    counts = {k: sum(1 for s in job["subjobs"].values() if s["state"] == v)
              for k, v in (("Queued", "Q"), ("Running", "R"), ("Expired", "F"))}
    remaining = [str(s["index"]) for s in job["subjobs"].values() if s["state"] != "F"]
    lines = ["Job Id: %s" % job["id"], "    Job_Name = %s" % job["name"],
             "    Job_Owner = %s" % job["owner"], "    job_state = %s" % st,
             "    queue = %s" % job["queue"], "    server = %s" % SERVER,
             "    ctime = %s" % ctime_str(job["ctime"])]
    fmt_res(job, lines)
    if job["held"]:
        lines.append("    comment = %s" % HOLD_COMMENT)
    elif st == "F":
        lines.append("    comment = Job Array Began at %s and finished" % ctime_str(job["ctime"]))
    else:
        lines.append("    comment = Job Array Began at %s" % ctime_str(job["ctime"]))
    lines += ["    array = True",
              "    array_indices_submitted = %s" % compress(job["indices"]),
              "    array_indices_remaining = %s" % (compress([int(i) for i in remaining]) or "-"),
              "    array_state_count = Queued:%d Running:%d Exiting:0 Expired:%d"
              % (counts["Queued"], counts["Running"], counts["Expired"])]
    return "\n".join(lines)


def sub_block(job, sub):
    lines = ["Job Id: %s" % sub["id"], "    Job_Name = %s" % job["name"],
             "    Job_Owner = %s" % job["owner"], "    job_state = %s" % sub["state"],
             "    queue = %s" % job["queue"], "    server = %s" % SERVER]
    if job.get("account"):
        lines.append("    Account_Name = %s" % job["account"])
    lines += ["    ctime = %s" % ctime_str(job["ctime"]),
              "    Output_Path = %s:%s" % (socket.gethostname(), sub["out"]),
              "    Error_Path = %s:%s" % (socket.gethostname(), sub["err"])]
    fmt_res(job, lines)
    if sub.get("start"):
        lines.append("    stime = %s" % ctime_str(sub["start"]))
        lines.append("    exec_host = %s/0*%d" % (socket.gethostname(), job["ncpus"]))
    if sub.get("pid"):
        lines.append("    session_id = %d" % sub["pid"])
    if sub["comment"]:
        lines.append("    comment = %s" % sub["comment"])
    if sub["state"] == "F" and "exit_status" in sub:
        lines.append("    Exit_status = %d" % sub["exit_status"])
    if job["array"]:
        lines += ["    array_id = %s" % job["id"], "    array_index = %d" % sub["index"]]
    lines.append("    Variable_List = PBS_O_WORKDIR=%s,PBS_O_QUEUE=%s" % (job["workdir"], job["queue"]))
    return "\n".join(lines)


def compress(nums):
    nums = sorted(nums)
    out, i = [], 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        out.append(str(nums[i]) if i == j else "%d-%d" % (nums[i], nums[j]))
        i = j + 1
    return ",".join(out)


def qstat(args):
    if os.environ.get("PBS_STANDIN_QSTAT_FAIL") == "1":
        raise Fail("qstat: cannot connect to server %s (errno=15010)" % SERVER, 1)
    full = history = expand = False
    ids = []
    for a in args:
        if a.startswith("-") and len(a) > 1:
            for ch in a[1:]:
                if ch == "f":
                    full = True
                elif ch in "xH":
                    history = True
                elif ch == "t":
                    expand = True
                elif ch in "waJ1n":       # accepted, no effect (wide, all, arrays only, ...)
                    pass
                else:
                    raise Fail("qstat: invalid option -- '%s'\nusage: qstat [-f] [-x] [-t] [job_id...]"
                               % ch, 2)
        else:
            ids.append(a)
    rc = 0
    records = []      # (job, sub or None for the array parent)
    with Lock():
        if ids:
            targets = []
            for text in ids:
                job, idx = find(text)
                if job is None:
                    print("qstat: Unknown Job Id %s" % text, file=sys.stderr)
                    rc = UNKNOWN_EXIT
                    continue
                targets.append((text, job, idx))
        else:
            targets = [(j["id"], j, None) for j in all_jobs()]
        for text, job, idx in targets:
            if refresh(job):
                save(job)
            subs = [s for s in job["subjobs"].values() if history or s["state"] != "F"]
            if idx is not None:
                subs = [s for s in subs if s["index"] == idx]
            if not subs:
                if ids:
                    print("qstat: Unknown Job Id %s" % text, file=sys.stderr)
                    rc = UNKNOWN_EXIT
                continue
            if not job["array"]:
                records.append((job, subs[0]))
            elif idx is not None:
                records.append((job, subs[0]))
            else:
                records.append((job, None))
                if expand:
                    records += [(job, s) for s in subs]
    if full:
        blocks = [parent_block(j) if s is None else sub_block(j, s) for j, s in records]
        if blocks:
            print("\n\n".join(blocks) + "\n")
    elif records:
        print("Job id            Name             User              Time Use S Queue")
        print("----------------  ---------------- ----------------  -------- - -----")
        for j, s in records:
            jid = j["id"] if s is None else s["id"]
            st = parent_state(j) if s is None else s["state"]
            print("%-17s %-16s %-17s %8s %s %s" % (jid[:17], j["name"][:16], j["owner"].split("@")[0][:16],
                                                  "0", st, j["queue"]))
    return rc


# --- qdel -------------------------------------------------------------------------------------
def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def kill_all(subs):
    # The whole session of each sub-job, not just its first process: a script that ignores
    # SIGTERM outlives the wrapper bash and must still get the SIGKILL (like PBS's kill_delay).
    running = [s for s in subs if s["state"] == "R" and alive(s)]
    for s in running:
        try:
            os.killpg(s["pid"], signal.SIGTERM)
        except ProcessLookupError:
            pass
    end = time.time() + 2
    while time.time() < end and any(group_alive(s["pid"]) for s in running):
        time.sleep(0.05)
    for s in running:
        try:
            os.killpg(s["pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass


def qdel(args):
    ids, i = [], 0
    while i < len(args):                                 # -W force, -x, -Wforce: accepted, no effect
        if args[i] == "-W":
            i += 1
        elif not args[i].startswith("-"):
            ids.append(args[i])
        i += 1
    if not ids:
        raise Fail("usage: qdel [-W force] job_identifier...", 2)
    rc = 0
    with Lock():
        for text in ids:
            job, idx = find(text)
            if job is not None and refresh(job):
                save(job)
            subs = [] if job is None else [s for s in job["subjobs"].values()
                                           if s["state"] != "F" and (idx is None or s["index"] == idx)]
            if not subs:
                print("qdel: Unknown Job Id %s" % text, file=sys.stderr)
                rc = UNKNOWN_EXIT
                continue
            for s in subs:
                s["deleted"] = True
            kill_all(subs)
            now = time.time()
            for s in subs:
                was_running = s["state"] == "R"
                s["state"] = "F"
                s["end"] = now
                s["exit_status"] = DELETED_EXIT if was_running else -3     # -3: deleted before run
                base = s["comment"].split(" and ")[0] if was_running else "Job deleted"
                s["comment"] = base + (" and finished" if was_running else "")
            save(job)
    return rc


def main(argv):
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)     # 'qstat ... | grep -q' must not trace back
    prog = os.path.basename(argv[1]) if len(argv) > 1 else ""
    commands = {"qsub": qsub, "qstat": qstat, "qdel": qdel}
    if prog not in commands:
        print("usage: pbs_standin.py qsub|qstat|qdel ARGS...", file=sys.stderr)
        return 2
    try:
        return commands[prog](argv[2:])
    except Fail as e:
        print(str(e), file=sys.stderr)
        return e.code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
