#!/usr/bin/env python3
"""Runs README's sessions as a first user would, and checks they print what README shows.

Usage: scripts/check-readme.py [BIN_DIR]   (default .build/debug: creditd and creditctl)

The sessions are the indented `$ ` lines of README's sections named in SECTIONS, in order, in
one bash on a pseudo-terminal (README shows what a terminal shows: `-o json` indented, progress
cleared), from a fresh temporary directory, with BIN_DIR first on PATH. A command's expected
output is the indented text after it, up to the next command; in it a line `...` stands for any
number of lines and `...` inside a line for any text, and runs of blanks compare equal (tables
are aligned with spaces in README, with tabs by some commands). A heredoc (`<<'EOF'`) belongs to
its command. A command marked `# waits` is stopped with SIGINT after a few seconds, as a user
would press Ctrl-C.
"""
import os
import pty
import re
import select
import signal
import subprocess
import sys
import tempfile
import time

SECTIONS = ["Example session", "Migrating to creditd", "The whole book and the event feed"]
MARK = "\x1eREADME-CMD"


def commands(readme):
    """(line number, command, expected lines) of the sessions, in order."""
    lines = readme.split("\n")
    section = None
    found = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            section = line[3:].strip()
        if section not in SECTIONS or not line.startswith("    $ "):
            i += 1
            continue
        number, command = i + 1, line[6:]
        i += 1
        heredoc = re.search(r"<<'(\w+)'", command)
        if heredoc:
            while i < len(lines) and lines[i][4:] != heredoc.group(1):
                command += "\n" + lines[i][4:]
                i += 1
            command += "\n" + heredoc.group(1)
            i += 1
        expected = []
        while i < len(lines) and not lines[i].startswith("    $ "):
            if lines[i].startswith("    "):
                expected.append(lines[i][4:])
            elif lines[i] == "" and i + 1 < len(lines) and lines[i + 1].startswith("    ") \
                    and not lines[i + 1].startswith("    $ ") and expected:
                expected.append("")
            else:
                break
            i += 1
        found.append((number, command, expected))
    return found


def normalize(line):
    line = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", line)  # terminal control sequences
    line = line.rstrip("\r").split("\r")[-1]           # what a carriage return leaves visible
    return re.sub(r"[ \t]+", " ", line).strip()


def matches(expected, actual):
    """Whether the actual lines are the expected ones, `...` lines matching any number of lines."""
    def line_matches(pattern, text):
        if "..." not in pattern:
            return pattern == text
        parts = [re.escape(part) for part in pattern.split("...")]
        return re.fullmatch(".*".join(parts), text) is not None

    memo = {}

    def walk(e, a):
        if (e, a) in memo:
            return memo[(e, a)]
        if e == len(expected):
            result = a == len(actual)
        elif expected[e] == "...":
            result = any(walk(e + 1, k) for k in range(a, len(actual) + 1))
        else:
            result = a < len(actual) and line_matches(expected[e], actual[a]) and walk(e + 1, a + 1)
        memo[(e, a)] = result
        return result

    return walk(0, 0)


def run(found, bin_dir, work):
    script = ["set +e"]
    for index, (_, command, _) in enumerate(found):
        script.append(f"printf '{MARK} {index}\\n'")
        if "# waits" in command:
            command = "timeout -s INT 4 " + command
        script.append(command)
    script.append(f"printf '{MARK} end\\n'")
    path = os.path.join(work, "session.sh")
    with open(path, "w") as file:
        file.write("\n".join(script) + "\n")
    env = dict(os.environ, PATH=bin_dir + ":" + os.environ["PATH"], TERM="xterm", COLUMNS="200")
    env.pop("CREDITD_SOCKET", None)
    controller, terminal = pty.openpty()
    shell = subprocess.Popen(["bash", path], cwd=work, env=env, stdin=terminal, stdout=terminal, stderr=terminal,
                             start_new_session=True)
    os.close(terminal)
    output = b""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 1)
        if ready:
            try:
                chunk = os.read(controller, 65536)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        elif shell.poll() is not None:
            break
    shell.wait(timeout=30)
    try:
        os.killpg(shell.pid, signal.SIGTERM)  # a daemon a session left running
    except ProcessLookupError:
        pass
    os.close(controller)
    text = output.decode("utf-8", "replace").replace("\r\n", "\n")
    pieces = {}
    current = None
    for line in text.split("\n"):
        if line.startswith(MARK):
            current = line[len(MARK):].strip()
            pieces[current] = []
        elif current is not None:
            pieces[current].append(line)
    return pieces


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    bin_dir = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, ".build", "debug"))
    for tool in ("creditd", "creditctl"):
        if not os.access(os.path.join(bin_dir, tool), os.X_OK):
            sys.exit(f"readme: no {tool} in {bin_dir}")
    with open(os.path.join(root, "README.md")) as file:
        found = commands(file.read())
    with tempfile.TemporaryDirectory(prefix="creditd-readme-") as work:
        pieces = run(found, bin_dir, work)
    failures = 0
    for index, (number, command, expected) in enumerate(found):
        actual = [normalize(line) for line in pieces.get(str(index), [])]
        while actual and actual[-1] == "":
            actual.pop()
        wanted = [normalize(line) if line.strip() != "..." else "..." for line in expected]
        if not matches(wanted, actual):
            failures += 1
            print(f"README.md:{number}: $ {command.splitlines()[0]}")
            print("  README shows:")
            for line in expected:
                print("    " + line)
            print("  it printed:")
            for line in pieces.get(str(index), []):
                print("    " + line)
    if "end" not in pieces:
        failures += 1
        print("readme: the session did not run to its end")
    print(f"readme: {len(found) - failures} of {len(found)} commands print what README shows")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
