"""The flags of `fxconnector cmd NAME`, generated from the commands_v1 schema (the SSOT).

Rules: one subcommand per command of the schema, with exactly that command's `args` as flags
(help text, ranges, choices and required-ness from the schema): a field `lookback_mins` is
`--lookback-mins`, the ms fields `from_ms`/`to_ms` are `--from`/`--to` (ISO-8601 or epoch ms),
a list is a comma list, a boolean a switch. A new command or field in the schema appears here
with no code change; a field of a type this module does not know fails loudly at start.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Final

from fxconnector.app.timeparse import parse_time_ms
from fxconnector.core.contracts import ContractName, load_schema
from fxconnector.core.errors import ContractViolation

_MS_SUFFIX: Final = "_ms"


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a command's `args` and its flag."""

    name: str
    flag: str
    kind: str  # "list", "int", "bool", "time", "choice", "text"
    help: str
    required: bool
    choices: tuple[str, ...] = ()

    def usage(self) -> str:
        metavar = {
            "list": "A,B,...",
            "int": "N",
            "bool": "",
            "time": "TIME",
            "choice": "|".join(self.choices),
            "text": "TEXT",
        }[self.kind]
        text = f"{self.flag} {metavar}".rstrip()
        return text if self.required else f"[{text}]"

    def value(self, raw: Any) -> Any:
        """The commands_v1 value of the parsed flag."""
        if self.kind == "list":
            return [item.strip() for item in str(raw).split(",") if item.strip()]
        if self.kind == "time":
            return parse_time_ms(str(raw), flag=self.flag)
        if self.kind == "bool":
            return bool(raw)
        return raw


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """One command of the schema: its name, what it does, its fields."""

    name: str
    description: str
    fields: tuple[Field, ...]

    def usage(self) -> str:
        return " ".join([self.name, *(field.usage() for field in self.fields)])


def command_specs() -> tuple[CommandSpec, ...]:
    """Every command of commands_v1, in the schema's order."""
    schema = load_schema(ContractName.COMMANDS_V1)
    defs: dict[str, Any] = schema["$defs"]
    specs = []
    for choice in schema["oneOf"]:
        command = _deref(defs, choice)
        name = command["properties"]["cmd"]["enum"][0]
        args = _deref(defs, command["properties"]["args"])
        required = set(args.get("required", ()))
        fields = tuple(
            _field(defs, field, prop, field in required)
            for field, prop in args["properties"].items()
        )
        about = command.get("description") or args.get("description", "")
        specs.append(CommandSpec(name, about.removeprefix(f"{name}: "), fields))
    return tuple(specs)


def add_flags(parser: argparse.ArgumentParser, spec: CommandSpec) -> None:
    """The command's own flags on its subparser."""
    for field in spec.fields:
        if field.kind == "bool":
            parser.add_argument(field.flag, dest=field.name, action="store_true", help=field.help)
            continue
        parser.add_argument(
            field.flag,
            dest=field.name,
            required=field.required,
            type=int if field.kind == "int" else str,
            choices=field.choices or None,
            metavar=None if field.choices else field.usage().strip("[]").split(" ", 1)[1],
            help=field.help,
        )


def command_args(spec: CommandSpec, parsed: argparse.Namespace) -> dict[str, Any]:
    """The `args` object of the command from the parsed flags (absent optionals left out)."""
    out: dict[str, Any] = {}
    for field in spec.fields:
        raw = getattr(parsed, field.name)
        if raw is None:
            continue
        out[field.name] = field.value(raw)
    return out


def _deref(defs: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref is None:
        return node
    found: dict[str, Any] = defs[ref.removeprefix("#/$defs/")]
    return found


def _field(defs: dict[str, Any], name: str, prop: dict[str, Any], required: bool) -> Field:
    prop = _deref(defs, prop)
    flag = "--" + name.removesuffix(_MS_SUFFIX).replace("_", "-")
    text = prop.get("description", "")
    kind = prop.get("type")
    if "enum" in prop:
        choices = tuple(str(v) for v in prop["enum"])
        return Field(name, flag, "choice", text or "one of the choices", required, choices)
    if kind == "array":
        item = prop.get("items", {}).get("description", "an item")
        bounds = f"{prop.get('minItems', 0)}..{prop.get('maxItems', '')}"
        return Field(name, flag, "list", f"comma list ({bounds}) of: {item}", required)
    if kind == "integer" and name.endswith(_MS_SUFFIX):
        return Field(name, flag, "time", "ISO-8601 (UTC if no offset) or epoch ms", required)
    if kind == "integer":
        bounds = f"{prop.get('minimum', '')}..{prop.get('maximum', '')}"
        return Field(name, flag, "int", f"{text} ({bounds})".strip(), required)
    if kind == "boolean":
        default = " (default)" if prop.get("default") else ""
        return Field(name, flag, "bool", f"switch{default}", required=False)
    if kind == "string":
        return Field(name, flag, "text", text, required)
    raise ContractViolation(f"commands_v1 field {name!r} has a type the CLI cannot map: {prop}")
