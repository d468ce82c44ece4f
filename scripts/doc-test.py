#!/usr/bin/env python3
"""The docs' own test: runs the shell examples the docs mark runnable and checks their links.

Documents: README.md, CONTRIBUTING.md, bench/README.md and docs/**/*.md (those that exist).

Runnable examples. A fenced block whose opening line is exactly

    ```sh runnable               the block must exit 0
    ```sh runnable expect-fail   the block must exit non-zero (its variables and `cd` do not
                                 carry over: it runs in a subshell)

is run. Every other block (```sh, ```yaml, ...) is only text. All runnable blocks of one
document run in order in ONE `bash -euo pipefail` process (each block is sourced, so later
blocks see the files, variables and `cd` of earlier ones), stdin /dev/null, in a fresh empty
working directory, with:

    PATH         prefixed with a directory holding `gantry` (the freshly built binary, --gantry)
    GANTRY_HOME  a fresh empty directory; GANTRY_DB and every other inherited GANTRY_* variable
                 are unset (except GANTRY_RUNTIME and GANTRY_LOG)
    GANTRY_REPO  the repository root (for examples/..., scripts/...)
    BUSYBOX_TAR  a busybox rootfs tar (scripts/busybox-rootfs.sh, built once per doc-test run,
                 only if some block mentions BUSYBOX_TAR):
                 gantry image import "$BUSYBOX_TAR" --name busybox:1

A document has --timeout seconds (default 300). Each document runs in its own session; when it
ends, its whole process group is killed, so `gantry server ... &` in a block needs no cleanup.
A failure names the document, the block's line, its text and the last 40 lines of its output.

Links. Every [text](target) and ![alt](target) outside code (and every [ref]: target) whose
target is relative must name an existing file or directory (relative to the document; /x is
relative to the repository root). An #anchor into a .md file (or a bare #anchor into the same
document) must match a heading's GitHub slug (lowercase, punctuation other than - and _
dropped, spaces to -, repeats get -1, -2, ...) or an <a name=/id=> anchor. http(s) links are
not fetched; --list shows them.

Usage: scripts/doc-test.py [--only PATH]... [--list] [--no-run] [--timeout S] [--gantry BIN]
                           [--root DIR] [--keep]
Exit status: 0 all passed, 1 a block failed or a link is broken, 2 usage/setup error.
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote

FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})(.*)$")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
LINK = re.compile(r"\]\(\s*(<[^>]*>|[^\s)]*)(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
ATX = re.compile(r"^\s{0,3}(#{1,6})(?:\s+(.*?))?(?:\s+#+)?\s*$")
SETEXT = re.compile(r"^\s{0,3}(=+|-+)\s*$")
HTML_ANCHOR = re.compile(r"<a\s[^>]*(?:name|id)=\"([^\"]+)\"", re.I)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
KEEP_ENV = {"GANTRY_RUNTIME", "GANTRY_LOG"}


def slug(text):
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # [text](url) -> text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


class Doc:
    def __init__(self, path):
        self.path = path
        self.blocks = []  # (line of the opening fence, text, expect_fail)
        self.links = []  # (line, target)
        self.anchors = set()
        self.problems = []  # (line, message)
        seen, fence, prev = {}, None, ""

        def heading(text):
            s = slug(text)
            n = seen.get(s, 0)
            seen[s] = n + 1
            self.anchors.add(s if n == 0 else f"{s}-{n}")

        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            m = FENCE.match(line)
            if fence:  # inside a fenced block: (marker, indent, start line, info, body)
                if m and m.group(2)[0] == fence[0][0] and len(m.group(2)) >= len(fence[0]) \
                        and not m.group(3).strip():
                    self._block(*fence[2:])
                    fence = None
                else:
                    fence[4].append(line[min(fence[1], len(line) - len(line.lstrip())):])
                continue
            if m and not (m.group(2)[0] == "`" and "`" in m.group(3)):
                fence, prev = (m.group(2), len(m.group(1)), n, m.group(3).strip(), []), ""
                continue
            text = INLINE_CODE.sub("", line)
            self.anchors.update(HTML_ANCHOR.findall(text))
            if ATX.match(line):
                heading(ATX.match(line).group(2) or "")
            elif SETEXT.match(line) and prev.strip() and not prev.lstrip().startswith(("#", "|", ">")):
                heading(prev.strip())
            self.links += [(n, t.strip("<>")) for t in LINK.findall(text)]
            self.links += [(n, t.strip("<>")) for t in REF_DEF.findall(text)]
            prev = line
        if fence:
            self.problems.append((fence[2], "code fence never closed"))

    def _block(self, start, info, body):
        words = info.split()
        if "runnable" not in words:
            return
        if words in (["sh", "runnable"], ["sh", "runnable", "expect-fail"]):
            self.blocks.append((start, "\n".join(body) + "\n", words[-1] == "expect-fail"))
        else:
            self.problems.append((start, f"unknown runnable block '{info}' (want 'sh runnable'"
                                         " or 'sh runnable expect-fail')"))


_docs = {}


def load(path):
    if path not in _docs:
        _docs[path] = Doc(path)
    return _docs[path]


def broken_links(doc, root):
    out = []
    for line, target in doc.links:
        if not target or SCHEME.match(target):
            continue  # http:, https:, mailto: ... are not checked
        part, _, anchor = target.partition("#")
        part, anchor = unquote(part.split("?")[0]), unquote(anchor)
        if not part:
            dest = doc.path
        else:
            dest = root / part.lstrip("/") if part.startswith("/") else doc.path.parent / part
        if not dest.exists():
            out.append((line, f"broken link ({target}): {rel(dest, root)} does not exist"))
        elif anchor and dest.is_file() and dest.suffix.lower() == ".md" \
                and anchor not in load(dest.resolve()).anchors:
            out.append((line, f"broken anchor ({target}): no heading #{anchor} in {rel(dest, root)}"))
    return out


def rel(path, root):
    try:
        return os.path.relpath(path, root)
    except ValueError:
        return str(path)


def group_alive(pgid):
    """True while a process of the group is alive (zombies, which PID 1 may reap late, are not)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def kill_group(pgid):
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        end = time.monotonic() + wait
        while time.monotonic() < end and group_alive(pgid):
            time.sleep(0.05)


def run_doc(doc, args, extra_env):
    """Runs the document's blocks; returns (ok, report lines)."""
    tmp = Path(tempfile.mkdtemp(prefix="doc-test-"))
    work, home, ctl, bindir = (tmp / d for d in ("work", "home", "ctl", "bin"))
    for d in (work, home, ctl, bindir):
        d.mkdir()
    (bindir / "gantry").symlink_to(args.gantry)
    trap = 'trap \'echo "doc-test: exit status $? at line $((__dt_line + LINENO)): $BASH_COMMAND" >&2\' ERR'
    driver = [trap]
    for i, (start, text, expect_fail) in enumerate(doc.blocks):
        (ctl / f"block-{i}.sh").write_text(text)
        blk, log = f'"$__dt_ctl/block-{i}.sh"', f'"$__dt_ctl/out-{i}.log"'
        driver.append(f'__dt_line={start}; echo {i} > "$__dt_ctl/current"')
        if expect_fail:
            driver += [f"set +e; trap - ERR; ( set -e; . {blk} ) > {log} 2>&1; __dt_rc=$?; set -e; {trap}",
                       f'if [ "$__dt_rc" = 0 ]; then echo "doc-test: marked expect-fail, but exited 0"'
                       f" >> {log}; exit 97; fi"]
        else:
            driver.append(f". {blk} > {log} 2>&1")
    driver.append('touch "$__dt_ctl/finished"')
    (ctl / "driver.sh").write_text("\n".join(driver) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GANTRY_") or k in KEEP_ENV}
    env.update(extra_env, GANTRY_HOME=str(home), __dt_ctl=str(ctl),
               PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    began, timed_out = time.monotonic(), False
    with open(ctl / "driver.log", "wb") as drv:
        p = subprocess.Popen(["bash", "-euo", "pipefail", str(ctl / "driver.sh")], cwd=work,
                             env=env, stdin=subprocess.DEVNULL, stdout=drv, stderr=subprocess.STDOUT,
                             start_new_session=True)
        try:
            rc = p.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            timed_out, rc = True, None
        kill_group(p.pid)  # the block's background processes, too
        rc = p.wait() if rc is None else rc
    took = time.monotonic() - began
    report, ok = [], rc == 0 and (ctl / "finished").exists() and not timed_out
    if not ok:
        cur = ctl / "current"
        i = int(cur.read_text()) if cur.exists() else 0
        start, text, expect_fail = doc.blocks[i]
        why = (f"timed out after {args.timeout} s" if timed_out else
               f"exit status {rc}" if rc else "stopped early (`exit` in a block?)")
        report.append(f"  block {i + 1} of {len(doc.blocks)} at {rel(doc.path, args.root)}:{start}"
                      f"{' (expect-fail)' if expect_fail else ''}: {why}")
        report += ["  | " + t for t in text.rstrip("\n").split("\n")]
        log = ctl / f"out-{i}.log"
        tail = log.read_text(errors="replace").splitlines()[-40:] if log.exists() else []
        tail += (ctl / "driver.log").read_text(errors="replace").splitlines()[-10:]
        report.append("  last 40 lines of its output:" if tail else "  (no output)")
        report += ["  > " + t for t in tail]
    if args.keep:
        report.append(f"  kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return ok, took, report


def main():
    here = Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=here, help="repository root (default: this repo)")
    ap.add_argument("--gantry", type=Path, help="gantry binary (default: "
                    "${CARGO_TARGET_DIR:-target}/debug/gantry from the root)")
    ap.add_argument("--only", action="append", default=[], metavar="PATH", help="only this document")
    ap.add_argument("--list", action="store_true", help="print the blocks and external links found")
    ap.add_argument("--no-run", action="store_true", help="only check links")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per document (default 300)")
    ap.add_argument("--keep", action="store_true", help="keep each document's temporary directory")
    args = ap.parse_args()
    root = args.root = args.root.resolve()
    if args.only:
        paths = [Path(p).resolve() if Path(p).exists() else root / p for p in args.only]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            sys.exit(f"doc-test: no such document: {', '.join(missing)}")
    else:
        paths = [root / p for p in ("README.md", "CONTRIBUTING.md", "bench/README.md")]
        paths = [p for p in paths if p.is_file()] + sorted((root / "docs").rglob("*.md"))
    docs = [load(p.resolve()) for p in paths]

    if args.list:
        for d in docs:
            for start, text, fail in d.blocks:
                first = text.strip().split("\n")[0] if text.strip() else ""
                print(f"{rel(d.path, root)}:{start}: sh runnable{' expect-fail' if fail else ''}: {first}")
            for line, target in d.links:
                if re.match(r"https?:", target):
                    print(f"{rel(d.path, root)}:{line}: external {target}")
        return 0

    extra_env, run = {"GANTRY_REPO": str(root)}, not args.no_run and any(d.blocks for d in docs)
    if run:
        if args.gantry is None:
            args.gantry = Path(os.environ.get("CARGO_TARGET_DIR", "target")) / "debug" / "gantry"
            args.gantry = args.gantry if args.gantry.is_absolute() else root / args.gantry
        args.gantry = args.gantry.resolve()
        if not (args.gantry.is_file() and os.access(args.gantry, os.X_OK)):
            sys.exit(f"doc-test: no gantry binary at {args.gantry}: run `cargo build -p gantry` "
                     "first, or pass --gantry")
    session = Path(tempfile.mkdtemp(prefix="doc-test-session-"))
    try:
        if run and any("BUSYBOX_TAR" in t for d in docs for _, t, _ in d.blocks):
            script = next(p for p in (root / "scripts/busybox-rootfs.sh", here / "scripts/busybox-rootfs.sh")
                          if p.exists())
            tar = session / "busybox.tar"
            b = subprocess.run(["bash", str(script), str(tar)], capture_output=True, text=True)
            if b.returncode:
                sys.exit(f"doc-test: {script} failed (exit {b.returncode}):\n{b.stderr}{b.stdout}")
            extra_env["BUSYBOX_TAR"] = str(tar)
        failed, nblocks, nlinks = [], 0, 0
        for d in docs:
            name = rel(d.path, root)
            problems = sorted(d.problems + broken_links(d, root))
            nlinks += len(problems)
            ok, took, report = True, 0.0, []
            if run and d.blocks:
                ok, took, report = run_doc(d, args, extra_env)
                nblocks += len(d.blocks)
            ok = ok and not problems
            what = (f"{len(d.blocks)} block{'s' * (len(d.blocks) != 1)}, {took:.1f} s" if run and d.blocks
                    else f"{len(d.blocks)} blocks not run" if d.blocks else "no runnable blocks")
            print(f"{'ok  ' if ok else 'FAIL'} {name} ({what}, {len(d.links)} links)", flush=True)
            for line, msg in problems:
                print(f"  {name}:{line}: {msg}")
            for r in report:
                print(r)
            if not ok:
                failed.append(name)
        print(f"doc-test: {len(docs)} documents, {nblocks} blocks run, {nlinks} link/block problems; "
              + (f"FAILED: {' '.join(failed)}" if failed else "all ok"))
        return 1 if failed else 0
    finally:
        shutil.rmtree(session, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
