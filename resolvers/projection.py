"""Projection: a selection completed over cached subtrees in one call per field.

graphql-core completes a field by building its resolve info, calling its resolver
through Strawberry's wrappers and dispatching on its type, for every field of every
subtree: most of the CPU of an answer executed from cached subtrees. A field whose
resolver is the default one (or declares a projection, `projects`) and whose whole
selection below is made of such fields, without arguments, directives or fragments, is
instead compiled once per document node into nested closures that read the subtree and
coerce its leaves with the same functions graphql-core calls. Anything a closure does
not expect (a null where the schema says non-null, a section whose module is
unavailable…) raises, and that field is executed the ordinary way instead, so answers
and errors are those of graphql-core.
"""

from collections.abc import Callable
from math import isfinite
from typing import Any

from graphql import (
    FieldNode,
    GraphQLBoolean,
    GraphQLField,
    GraphQLFloat,
    GraphQLInt,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLString,
    get_nullable_type,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    is_object_type,
)
from graphql.execution.values import get_argument_values
from graphql.pyutils import Undefined

# (source, executor) → the field's completed value; raises when it cannot project.
Plan = Callable[[Any, Any], Any]
# (source, context, **arguments) → the field's value, as its resolver would return it.
Project = Callable[..., Any]
MAX_PLANS = 4_000  # document nodes remembered (then all forgotten: documents come back)


class NotProjected(Exception):
    """This value is completed the ordinary way (which reports what is wrong with it)."""


def projects(project: Project) -> Callable[[Any], Any]:
    """Marks a resolver as pure over its source and arguments: `project(source, context,
    **arguments)` returns what it would (or raises NotProjected where it would do more,
    like report an error)."""

    def mark(resolver: Any) -> Any:
        resolver.projection = project
        return resolver

    return mark


def _projected(project: Project, field: GraphQLField, node: FieldNode) -> Plan:
    if not field.args and not node.arguments:
        return lambda source, executor: project(source, executor.context_value)

    def get(source: Any, executor: Any) -> Any:
        arguments = get_argument_values(field, node, executor.variable_values)
        return project(source, executor.context_value, **arguments)

    return get


def _plain_leaf(python_name: str, type_: GraphQLOutputType, node: FieldNode) -> Plan | None:
    """A scalar or enum read by the default resolver, in one closure; built-in scalars
    of their own Python type pass as they are (what their coercion returns for them)."""
    non_null = is_non_null_type(type_)
    named = get_nullable_type(type_)  # type: ignore[type-var]
    if not is_leaf_type(named) or node.selection_set is not None:
        return None
    coerce = named.coerce_output_value
    own = _OWN_TYPES.get(named.name) if named in _BUILT_IN else None

    def leaf(source: Any, executor: Any) -> Any:
        value: Any = source[python_name] if type(source) is dict else getattr(source, python_name)
        if value is None:
            if non_null:
                raise NotProjected
            return None
        if type(value) is own:
            if own is str or own is bool:
                return value
            if own is int:
                if _MIN_INT <= value <= _MAX_INT:  # type: ignore[operator]
                    return value
            elif isfinite(value):  # type: ignore[arg-type]
                return value
        out = coerce(value)
        if out is None or out is Undefined:
            raise NotProjected
        return out

    return leaf


# Built-in scalars and the Python type each returns unchanged (range and finiteness
# checked as graphql-core checks them).
_BUILT_IN = (GraphQLInt, GraphQLFloat, GraphQLString, GraphQLBoolean)
_OWN_TYPES: dict[str, type] = {"Int": int, "Float": float, "String": str, "Boolean": bool}
_MIN_INT, _MAX_INT = -2_147_483_648, 2_147_483_647


def _attribute(python_name: str) -> Plan:
    def get(source: Any, executor: Any) -> Any:
        # resolvers/scalars.py field_resolver: subtrees are dicts, other objects attributes.
        if type(source) is dict:
            return source[python_name]
        return getattr(source, python_name)

    return get


class Projector:
    """Plans by document node, for one schema's executions."""

    def __init__(self) -> None:
        self._plans: dict[int, tuple[FieldNode, Plan | None]] = {}

    def plan(self, parent_type: GraphQLObjectType, node: FieldNode) -> Plan | None:
        entry = self._plans.get(id(node))
        if entry is not None and entry[0] is node:  # the node is kept: its id is its own
            return entry[1]
        plan = self._field(parent_type, node)
        if len(self._plans) >= MAX_PLANS:
            self._plans.clear()
        self._plans[id(node)] = (node, plan)
        return plan

    def _field(self, parent_type: GraphQLObjectType, node: FieldNode) -> Plan | None:
        if node.directives:
            return None
        name = node.name.value
        if name == "__typename":
            type_name = parent_type.name
            return lambda source, executor: type_name
        field = parent_type.fields.get(name)
        if field is None:
            return None
        definition = (field.extensions or {}).get("strawberry-definition")
        if definition is None or definition.extensions:
            return None
        resolver = definition.base_resolver
        get: Plan
        if resolver is None:
            if field.args or node.arguments:
                return None
            leaf = _plain_leaf(definition.python_name, field.type, node)
            if leaf is not None:
                return leaf  # most fields: one call each
            get = _attribute(definition.python_name)
        else:
            project = getattr(resolver.wrapped_func, "projection", None)
            if project is None:
                return None
            get = _projected(project, field, node)
        complete = self._complete(field.type, node)
        if complete is None:
            return None
        return lambda source, executor: complete(get(source, executor), executor)

    def _complete(self, type_: GraphQLOutputType, node: FieldNode) -> Plan | None:
        if is_non_null_type(type_):
            inner = self._complete(type_.of_type, node)  # type: ignore[attr-defined]
            if inner is None:
                return None

            def non_null(value: Any, executor: Any) -> Any:
                if value is None:
                    raise NotProjected
                return inner(value, executor)

            return non_null
        if is_list_type(type_):
            item = self._complete(type_.of_type, node)  # type: ignore[attr-defined]
            if item is None:
                return None

            def as_list(value: Any, executor: Any) -> Any:
                if value is None:
                    return None
                if type(value) is not list:
                    raise NotProjected
                return [item(v, executor) for v in value]

            return as_list
        if is_leaf_type(type_):
            if node.selection_set is not None:
                return None
            coerce = type_.coerce_output_value  # type: ignore[union-attr]

            def leaf(value: Any, executor: Any) -> Any:
                if value is None:
                    return None
                out = coerce(value)
                if out is None or out is Undefined:
                    raise NotProjected
                return out

            return leaf
        if is_object_type(type_):
            return self._object(type_, node)  # type: ignore[arg-type]
        return None  # interfaces and unions: the ordinary way

    def _object(self, type_: GraphQLObjectType, node: FieldNode) -> Plan | None:
        if type_.is_type_of is not None or node.selection_set is None:
            return None
        fields: list[tuple[str, Plan]] = []
        for selection in node.selection_set.selections:
            if not isinstance(selection, FieldNode):
                return None  # fragments: the ordinary way
            key = selection.alias.value if selection.alias else selection.name.value
            if any(key == k for k, _ in fields):
                return None  # merged fields: the ordinary way
            plan = self._field(type_, selection)
            if plan is None:
                return None
            fields.append((key, plan))

        def project(value: Any, executor: Any) -> Any:
            if value is None:
                return None
            return {key: plan(value, executor) for key, plan in fields}

        return project
