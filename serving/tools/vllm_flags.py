"""Print the option flags `vllm serve` accepts, read from a vLLM wheel's source without installing it.

    pip download vllm==0.33.0 --no-deps -d /tmp/vllm-wheel
    python serving/tools/vllm_flags.py /tmp/vllm-wheel/vllm-0.33.0-*.whl > serving/vllm_flags.txt

Importing vLLM needs torch and a GPU stack, so the parser is not built; its definitions are read
with `ast` instead, following what they do at run time:
- `make_arg_parser` (vllm/entrypoints/common/cli_args.py) adds a few flags by name, then
  `FrontendArgs.add_cli_args` adds `--<field-name>` for each field of FrontendArgs and its base;
- `EngineArgs.add_cli_args` and `AsyncEngineArgs.add_cli_args` (vllm/engine/arg_utils.py) add
  flags by name, most with `**get_kwargs(SomeConfig)["field"]`;
- `get_kwargs` gives a field typed `bool` (but not `bool | str | None`) a BooleanOptionalAction,
  which also accepts `--no-<flag>`; so does an explicit `action=argparse.BooleanOptionalAction`.
Flags a platform plugin adds at run time (`pre_register_and_update`) are not included.
"""

from __future__ import annotations

import ast
import re
import sys
import zipfile
from pathlib import Path

CLI_ARGS = "vllm/entrypoints/common/cli_args.py"
ARG_UTILS = "vllm/engine/arg_utils.py"
FRONTEND_CLASSES = ("FrontendArgs", "BaseFrontendArgs")


def dataclass_fields(trees: list[ast.Module]) -> dict[str, dict[str, str]]:
    """Each class's annotated fields (name -> annotation source), ClassVars left out."""
    classes: dict[str, dict[str, str]] = {}
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                fields = classes.setdefault(node.name, {})
                for item in node.body:
                    if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                        annotation = ast.unparse(item.annotation)
                        if not annotation.startswith(("ClassVar", "InitVar")):
                            fields[item.target.id] = annotation
    return classes


def is_boolean_option(annotation: str) -> bool:
    """Mirror of `_compute_kwargs`: a bool field gets --no-<name>, unless it is `bool | str | None`."""
    names = set(re.findall(r"\b(bool|str|None)\b", annotation))
    return "bool" in names and not (names == {"bool", "str", "None"} and "|" in annotation)


def config_of(value: ast.expr, configs: dict[str, str]) -> tuple[str, str] | None:
    """(class, field) of `X_kwargs["field"]` or `get_kwargs(Class)["field"]`."""
    if not (isinstance(value, ast.Subscript) and isinstance(value.slice, ast.Constant)):
        return None
    field = str(value.slice.value)
    target = value.value
    if isinstance(target, ast.Name) and target.id in configs:
        return configs[target.id], field
    if isinstance(target, ast.Call) and ast.unparse(target.func) == "get_kwargs" and target.args:
        return ast.unparse(target.args[0]), field
    return None


def added_flags(function: ast.FunctionDef, classes: dict[str, dict[str, str]]) -> set[str]:
    """Flags of every `add_argument` call in one function."""
    configs: dict[str, str] = {}  # variable -> Config class, from `x = get_kwargs(Config)`
    fields: dict[str, tuple[str, str]] = {}  # variable -> (Config class, field), from `y = x["f"]`
    flags: set[str] = set()
    for node in ast.walk(function):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, value = node.targets[0].id, node.value
            if isinstance(value, ast.Call) and ast.unparse(value.func) == "get_kwargs" and value.args:
                configs[name] = ast.unparse(value.args[0])
            elif (found := config_of(value, configs)) is not None:
                fields[name] = found
    for node in ast.walk(function):
        if not (isinstance(node, ast.Call) and ast.unparse(node.func).endswith(".add_argument")):
            continue
        names = [a.value for a in node.args if isinstance(a, ast.Constant) and str(a.value).startswith("-")]
        boolean = False
        for keyword in node.keywords:
            if keyword.arg == "action" and ast.unparse(keyword.value).endswith("BooleanOptionalAction"):
                boolean = True
            if keyword.arg is None:  # **kwargs of a config field, possibly `**{**kwargs["f"], ...}`
                value = keyword.value
                if isinstance(value, ast.Dict):
                    value = next(
                        (v for k, v in zip(value.keys, value.values, strict=True) if k is None), value
                    )
                found = config_of(value, configs)
                if found is None and isinstance(value, ast.Name):
                    found = fields.get(value.id)
                if found is not None:
                    boolean = boolean or is_boolean_option(classes.get(found[0], {}).get(found[1], ""))
        flags.update(names)
        if boolean:
            flags.update(f"--no-{n[2:]}" for n in names if n.startswith("--"))
    return flags


def frontend_flags(classes: dict[str, dict[str, str]]) -> set[str]:
    flags: set[str] = set()
    for cls in FRONTEND_CLASSES:
        for field, annotation in classes.get(cls, {}).items():
            flag = "--" + field.replace("_", "-")
            flags.add(flag)
            if is_boolean_option(annotation):
                flags.add("--no-" + flag[2:])
    return flags


def serve_flags(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        sources = {
            name: archive.read(name).decode()
            for name in archive.namelist()
            if name in (CLI_ARGS, ARG_UTILS) or (name.startswith("vllm/config/") and name.endswith(".py"))
        }
    trees = {name: ast.parse(source) for name, source in sources.items()}
    classes = dataclass_fields(list(trees.values()))
    flags = frontend_flags(classes)
    for name in (CLI_ARGS, ARG_UTILS):
        for node in ast.walk(trees[name]):
            if isinstance(node, ast.FunctionDef) and node.name in ("make_arg_parser", "add_cli_args"):
                flags |= added_flags(node, classes)
    return flags


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    wheel = Path(argv[1])
    version = wheel.name.split("-")[1]
    flags = sorted(serve_flags(wheel))
    print(f"# Option flags of `vllm serve` in vLLM {version}, read from the source in {wheel.name}.")
    print(f"# Generated by: pip download vllm=={version} --no-deps -d /tmp/vllm-wheel")
    print(f"#               python serving/tools/vllm_flags.py /tmp/vllm-wheel/{wheel.name} \\")
    print("#                   > serving/vllm_flags.txt")
    print("# The supervisor refuses flags not listed here; tests check every flag it emits is listed.")
    print("\n".join(flags))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
