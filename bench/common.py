"""What several benches share: a free loopback port, and `wrk` (installed with apt-get when
missing and running as root). The benches run as `python3 bench/NAME.py`, so this file's
folder is on their import path."""
import os, shutil, socket, subprocess, sys


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_wrk():
    if shutil.which("wrk"):
        return
    if os.geteuid() != 0:
        sys.exit("wrk is not installed: install it (Debian: `apt-get install wrk`) and rerun")
    print("installing wrk with apt-get", file=sys.stderr)
    if subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], capture_output=True).returncode:
        subprocess.run(["apt-get", "update", "-q"], check=True, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, capture_output=True)
    if not shutil.which("wrk"):
        sys.exit("apt-get installed wrk but it is not on PATH")
