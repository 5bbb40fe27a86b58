"""The rules every image of the project follows, checked on its Dockerfile.

Images cannot be built on a machine without a container engine, so their Dockerfiles are
parsed (with BuildKit's own parser, through the `dockerfile` package) and held to:
multi-stage; the final stage runs as a numeric non-root USER; base images pinned to a
version (no `latest`, no bare name); every `pip install` names exact versions; no build
tools installed in the final stage.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import dockerfile

BUILD_TOOLS = re.compile(
    r"^(gcc|g\+\+|clang|cc|make|cmake|ninja-build|build-essential|git|pkg-config|"
    r"autoconf|automake|libtool|cargo|rustc|golang(-go)?|.*-dev|.*-devel)$"
)
"""Package names that are build tools or headers: at home in a build stage only."""

PIP_OPTIONS_WITH_VALUE = {
    "-r",
    "--requirement",
    "-c",
    "--constraint",
    "-i",
    "--index-url",
    "--extra-index-url",
    "-f",
    "--find-links",
    "-t",
    "--target",
    "--prefix",
    "--root",
    "--platform",
    "--python-version",
    "--implementation",
    "--abi",
    "--only-binary",
    "--no-binary",
    "--progress-bar",
    "--cache-dir",
    "--src",
    "--trusted-host",
}


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


def _substitute(text: str, args: dict[str, str]) -> str:
    return re.sub(
        r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: args.get(m.group(1), m.group(0)), text
    )


def stages(path: Path) -> list[Stage]:
    """The build stages of a Dockerfile, with global ARG defaults substituted into FROM."""
    global_args: dict[str, str] = {}
    result: list[Stage] = []
    for cmd in dockerfile.parse_file(str(path)):
        op = cmd.cmd.upper()
        if op == "ARG" and not result:
            for decl in cmd.value:
                key, _, default = decl.partition("=")
                global_args[key] = default
        elif op == "FROM":
            words = list(cmd.value)
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            result.append(Stage(_substitute(words[0], global_args), name))
        elif result:
            result[-1].instructions.append((op, " ".join(cmd.value)))
    return result


def _pinned_image(image: str) -> bool:
    if "@sha256:" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return False
    tag = last.split(":", 1)[1]
    return tag != "latest" and re.search(r"\d+\.\d+", tag) is not None


SHELL_KEYWORDS = {"if", "then", "elif", "else", "fi", "do", "done", "!"}
"""Words that open or close a compound command: the simple command after one starts there."""


def shell_commands(shell: str) -> list[list[str]]:
    """A RUN line split into simple commands at &&, ||, ;, | and newlines, with the
    keywords of `if ...; then ...; else ...; fi` dropped (each branch is checked)."""
    text = shell.replace("\\\n", " ")
    try:
        lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        words = list(lexer)
    except ValueError:
        words = text.split()
    commands: list[list[str]] = [[]]
    redirect_target = False
    for word in words:
        if redirect_target:
            redirect_target = False
        elif word in {"&&", "||", ";", "|", ";;"}:
            commands.append([])
        elif word in {">", ">>", "<", ">&", "<&", "&>", ">|"}:
            redirect_target = True  # `>&2`, `> file`: not an argument
        elif word in SHELL_KEYWORDS and not commands[-1]:
            continue
        else:
            commands[-1].append(word)
    return [c for c in commands if c]


def pip_requirements(command: list[str]) -> list[str] | None:
    """The requirement arguments of a `pip install` command, or None if it is not one."""
    for i, word in enumerate(command):
        if word.endswith("pip") or word.endswith("pip3") or word in {"pip", "pip3"}:
            rest = command[i + 1 :]
            break
        if word == "-m" and i + 1 < len(command) and command[i + 1] == "pip":
            rest = command[i + 2 :]
            break
    else:
        return None
    if not rest or rest[0] != "install":
        return None
    requirements: list[str] = []
    skip = False
    for word in rest[1:]:
        if skip:
            skip = False
            continue
        if word in PIP_OPTIONS_WITH_VALUE:
            skip = True
            if word in {"-r", "--requirement"}:
                requirements.append(f"-r {word}")
            continue
        if word.startswith("-"):
            continue
        requirements.append(word)
    return requirements


def _local(requirement: str) -> bool:
    return (
        requirement in {"."}
        or requirement.startswith(("/", "./", "../"))
        or (requirement.endswith(".whl"))
    )


def _installed_packages(command: list[str]) -> list[str]:
    """Packages an apt-get/apt/apk/dnf/yum install command adds."""
    if len(command) < 2 or command[0] not in {"apt-get", "apt", "apk", "dnf", "yum", "microdnf"}:
        return []
    if "install" not in command and "add" not in command:
        return []
    return [w.split("=")[0] for w in command[1:] if not w.startswith("-")][1:]


def violations(path: Path) -> list[str]:
    """Every rule the Dockerfile at `path` breaks, in words (empty: it follows them all)."""
    found: list[str] = []
    all_stages = stages(path)
    names = {s.name for s in all_stages if s.name}
    if len(all_stages) < 2:
        found.append("not multi-stage: one FROM only")
    for stage in all_stages:
        if stage.image not in names and not _pinned_image(stage.image):
            found.append(f"base image {stage.image!r} is not pinned to a version")
        for op, text in stage.instructions:
            if op != "RUN":
                continue
            for command in shell_commands(text):
                for req in pip_requirements(command) or []:
                    if req.startswith("-r "):
                        found.append(f"pip install -r: pin the packages in the Dockerfile ({text})")
                    elif not _local(req) and "==" not in req:
                        found.append(f"pip requirement {req!r} is not pinned with ==")
    if not all_stages:
        return [*found, "no FROM"]
    final = all_stages[-1]
    users = [text for op, text in final.instructions if op == "USER"]
    if not users:
        found.append("final stage has no USER: it would run as root")
    else:
        user = users[-1].split(":")[0]
        if not user.isdigit():
            found.append(f"final USER {user!r} is not numeric (runAsNonRoot cannot verify it)")
        elif int(user) == 0:
            found.append("final USER is root (0)")
    for op, text in final.instructions:
        if op != "RUN":
            continue
        for command in shell_commands(text):
            tools = [p for p in _installed_packages(command) if BUILD_TOOLS.match(p)]
            if tools:
                found.append(f"final stage installs build tools: {', '.join(tools)}")
    return found
