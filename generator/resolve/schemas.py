"""Schemas: field types, constraints, defaults, inheritance and each schema's example."""

from __future__ import annotations

import functools
import itertools
import json
import math
import re
import warnings
from typing import Annotated, Any

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_core import SchemaError

from ..blueprint import ERROR_SCHEMA, Schema, SchemaField, TypeRef
from ..examples import ExampleError, example_value, schema_example
from ..field_types import TypeSyntaxError, allowed_constraints, parse_type
from ..model import SchemaSpec
from ..scalars import CONSTRAINTS, SCALARS
from ..yaml_source import Loc
from .checks import Checks

# Defaults are checked the way the emitted models check them: Python's re for patterns.
_DEFAULT_CHECK = ConfigDict(regex_engine="python-re")


class SchemaRules(Checks):
    """Resolve the blueprint's schemas, in an order where each follows what it uses."""

    def schemas(self) -> tuple[Schema, ...]:
        specs = self.spec.schemas
        types: dict[str, dict[str, TypeRef]] = {}
        for name, schema in specs.items():
            if schema.extends is not None:
                loc = ("schemas", name, "extends")
                if schema.extends == ERROR_SCHEMA:
                    self.error(loc, "a schema cannot extend the built-in ErrorRecord")
                else:
                    self.schema_ref(
                        loc, schema.extends, f"'extends' of schema {name!r}"
                    )
            types[name] = {}
            for field_name, field in schema.fields.items():
                ref = self.field_type(name, field_name, field.type)
                if ref is not None:
                    types[name][field_name] = ref
        order = self.schema_order(types)
        resolved: dict[str, Schema] = {}
        for name in order:
            resolved[name] = self.schema(name, specs[name], types[name], resolved)
        return tuple(resolved[name] for name in order)

    def field_type(self, schema: str, field: str, text: str) -> TypeRef | None:
        loc = ("schemas", schema, "fields", field, "type")
        try:
            ref = parse_type(text)
        except TypeSyntaxError as exc:
            self.error(loc, str(exc))
            return None
        for name in ref.schemas():
            if name == ERROR_SCHEMA:
                self.error(
                    loc, "ErrorRecord can be the schema of a port, not of a field"
                )
                return None
            if not self.schema_ref(loc, name, f"field {schema}.{field}"):
                return None
        return ref

    def schema_order(self, types: dict[str, dict[str, TypeRef]]) -> list[str]:
        """Schemas in blueprint order, each after the schemas it extends or refers to."""
        deps: dict[str, list[str]] = {}
        for name, schema in self.spec.schemas.items():
            refs = [schema.extends] if schema.extends in types else []
            refs += [
                s for ref in types[name].values() for s in ref.schemas() if s in types
            ]
            deps[name] = refs
        order: list[str] = []
        state: dict[str, int] = {}  # 1: visiting, 2: done

        def visit(name: str, path: list[str]) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                cycle = " -> ".join([*path[path.index(name) :], name])
                self.error(
                    ("schemas", name),
                    f"schemas refer to themselves: {cycle}; version 1 has no recursive schemas",
                )
                return
            state[name] = 1
            for dep in deps[name]:
                visit(dep, [*path, name])
            state[name] = 2
            order.append(name)

        for name in self.spec.schemas:
            visit(name, [])
        return order

    def schema(
        self,
        name: str,
        spec: SchemaSpec,
        types: dict[str, TypeRef],
        done: dict[str, Schema],
    ) -> Schema:
        inherited: tuple[SchemaField, ...] = ()
        if spec.extends is not None and spec.extends in done:
            inherited = done[spec.extends].fields
        taken = {f.name: f.declared_in for f in inherited}
        fields = list(inherited)
        for field_name, field in spec.fields.items():
            loc: Loc = ("schemas", name, "fields", field_name)
            if field_name in taken:
                self.error(
                    loc,
                    f"field {field_name!r} is already defined by schema {taken[field_name]!r}",
                )
                continue
            ref = types.get(field_name)
            if ref is None:
                continue
            constraints = tuple(
                (key, getattr(field, key))
                for key in CONSTRAINTS
                if getattr(field, key) is not None
            )
            before = len(self.problems)
            self.check_constraints(loc, ref, dict(constraints))
            if field.has_default:
                self.check_default(loc, ref, field.default, dict(constraints))
            if len(self.problems) == before:
                self.check_example(loc, ref, dict(constraints))
            fields.append(
                SchemaField(
                    name=field_name,
                    type=ref,
                    required=not field.has_default,
                    default=field.default,
                    description=field.description,
                    pii=field.pii,
                    constraints=constraints,
                    declared_in=name,
                )
            )
        example: dict[str, Any] = {}
        if all(s in self.examples for f in fields for s in f.type.schemas()):
            try:
                example = schema_example(fields, self.examples)
            except ExampleError:  # reported on the field by check_example
                pass
            else:
                self.examples[name] = example
        return Schema(
            name,
            spec.description,
            spec.extends,
            tuple(fields),
            tuple(spec.fields),
            json.dumps(example),
            # a schema that extends a keyed one is keyed the same way
            spec.key or (done[spec.extends].key if spec.extends in done else None),
        )

    def check_example(
        self, loc: Loc, ref: TypeRef, constraints: dict[str, Any]
    ) -> None:
        """Report a field whose constraints defeat the example every emitted test needs."""
        if ref.schemas():  # an example of each schema is checked with that schema
            return
        where: Loc = (*loc, "pattern") if "pattern" in constraints else loc
        try:
            value = example_value(ref, constraints, self.examples)
        except ExampleError as exc:
            self.error(
                where,
                f"{exc}; the emitted tests need a valid example of every schema: "
                "simplify the constraint",
            )
            return
        key = tuple((k, type(bound), bound) for k, bound in sorted(constraints.items()))
        adapter = default_checker(ref, key)
        if adapter is None:
            return
        try:
            adapter.validate_json(json.dumps(value), strict=True)
        except ValidationError as exc:
            self.error(
                where,
                f"portwright cannot derive a valid example for type '{ref}' under these "
                f"constraints (its try, {value!r}: {exc.errors()[0]['msg']}); the emitted "
                "tests need one: loosen the constraints",
            )

    def check_constraints(
        self, loc: Loc, ref: TypeRef, constraints: dict[str, Any]
    ) -> None:
        allowed = allowed_constraints(ref)
        for key in constraints:
            if key not in allowed:
                fits = ", ".join(sorted(allowed)) or "none"
                self.error(
                    (*loc, key),
                    f"constraint '{key}' does not apply to type '{ref}' (it takes: {fits})",
                )
        bounds: dict[str, float] = {}
        for key in ("gt", "ge", "lt", "le"):
            value = constraints.get(key)
            if isinstance(value, float) and not math.isfinite(value):
                self.error((*loc, key), f"{key} must be a finite number, got {value}")
            elif value is not None:
                bounds[key] = value
        for low_key, high_key in itertools.product(("gt", "ge"), ("lt", "le")):
            low, high = bounds.get(low_key), bounds.get(high_key)
            if low is None or high is None:
                continue
            strict = low_key == "gt" or high_key == "lt"
            if low > high or (low == high and strict):
                self.error(
                    loc,
                    f"no value satisfies both {low_key} {low} and {high_key} {high}",
                )
                break
        low, high = constraints.get("min_length"), constraints.get("max_length")
        if low is not None and high is not None and low > high:
            self.error(
                (*loc, "min_length"),
                f"min_length {low} is greater than max_length {high}",
            )
        pattern = constraints.get("pattern")
        if pattern is not None:
            try:
                with warnings.catch_warnings():  # "possible set difference" and such
                    warnings.simplefilter("ignore")
                    re.compile(pattern)
            except re.error as exc:
                self.error(
                    (*loc, "pattern"),
                    f"pattern {pattern!r} is not a valid regular expression: {exc}",
                )

    def check_default(
        self, loc: Loc, ref: TypeRef, value: Any, constraints: dict[str, Any]
    ) -> None:
        if value is None:
            if not ref.optional:
                self.error(
                    (*loc, "default"),
                    f"default is null but type '{ref}' is not optional (write '{ref} | None')",
                )
            return
        if ref.schemas():
            self.error(
                (*loc, "default"), f"a field of type '{ref}' may only default to null"
            )
            return
        try:
            # The emitted model holds the default as a Python literal, so it must be
            # of the field's type already (no coercion): checked strictly, as JSON.
            text = json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            self.error(
                (*loc, "default"),
                f"default {value!r} is not a plain value (a string, a finite number, "
                "true/false, null, a list or a mapping)",
            )
            return
        allowed = allowed_constraints(ref)
        usable = {
            key: bound for key, bound in constraints.items() if key in allowed
        }  # the others are reported by check_constraints
        # typed: gt=1 and gt=1.0 are equal keys but word their errors differently
        key = tuple(
            (name, type(bound), bound) for name, bound in sorted(usable.items())
        )
        adapter = default_checker(ref, key)
        if adapter is None:  # an invalid pattern, reported by check_constraints
            return
        try:
            adapter.validate_json(text, strict=True)
        except ValidationError as exc:
            error = exc.errors()[0]
            reason = error["msg"]
            if error["type"] == "string_pattern_mismatch":  # quote it: one line
                reason = f"String should match pattern {usable['pattern']!r}"
            self.error(
                (*loc, "default"), f"default {value!r} is not a valid '{ref}': {reason}"
            )


@functools.lru_cache(maxsize=256)
def default_checker(
    ref: TypeRef, constraints: tuple[tuple[str, type, Any], ...]
) -> TypeAdapter[Any] | None:
    """The validator of defaults of ``ref`` under ``constraints``; None if it cannot be built.

    Building one costs ~1 ms and a blueprint repeats the same few field types, so
    they are kept: a large blueprint would otherwise spend most of its load here.
    """
    bounds = {name: bound for name, _type, bound in constraints}
    annotation: Any = Annotated[python_type(ref), Field(**bounds)]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return TypeAdapter(annotation, config=_DEFAULT_CHECK)
    except SchemaError:
        return None


def python_type(ref: TypeRef) -> Any:
    """The Python type of a non-schema TypeRef (used to check defaults)."""
    if ref.item is not None:
        item: Any = python_type(ref.item)
        core: Any = list[item]
    else:
        core = SCALARS[ref.name].python
    return core | None if ref.optional else core
