"""Every `--flag` a message under core/ and server/ names is a real flag: one
of graftd's (from `graftd --helpfull`) or one of the graft CLI's (its
add_option/add_flag declarations in client/). A message that sends an
operator to a flag that does not exist is a dead end."""
import os
import pathlib
import re
import subprocess

SOURCE = pathlib.Path(os.environ.get("GRAFT_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[2]))
LITERAL = re.compile(r'"((?:[^"\\]|\\.)*)"')
FLAG = re.compile(r"(?<![\w-])--([a-z][a-z0-9_]+)")


def graftd_flags():
    out = subprocess.run([os.environ["GRAFTD_BIN"], "--helpfull"], capture_output=True, text=True).stdout
    flags = set(re.findall(r"^\s+--([a-z][a-z0-9_]+) ", out, re.M))
    assert "max_message_bytes" in flags and "data_dir" in flags, out[:500]
    return flags


def client_flags():
    flags = set()
    for path in (SOURCE / "client").glob("*.cc"):
        for decl in re.findall(r'add_(?:option|flag)\("([^"]+)"', path.read_text()):
            flags.update(re.findall(r"--([a-z][a-z0-9_]+)", decl))
    assert "token_file" in flags and "server" in flags
    return flags


def named_flags():
    for folder in ("core", "server"):
        for path in sorted((SOURCE / folder).rglob("*")):
            if path.suffix not in (".cc", ".h"):
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if line.lstrip().startswith("//"):
                    continue
                for literal in LITERAL.findall(line):
                    for flag in FLAG.findall(literal):
                        yield f"{path.relative_to(SOURCE)}:{number}", flag


def test_every_flag_a_message_names_exists():
    known = graftd_flags() | client_flags()
    named = list(named_flags())
    assert len(named) > 50, "the scan found the messages"
    unknown = [f"{where}: --{flag}" for where, flag in named if flag not in known]
    assert not unknown, "messages name flags that do not exist:\n" + "\n".join(unknown)
