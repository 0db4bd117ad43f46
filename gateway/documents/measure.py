"""Measuring a document in time linear in its size, before graphql-core validates it.

Fragments make what a document selects exponential in its length (`fragment Fi on T
{ ...F(i-1) ...F(i-1) }` doubles per line), and graphql-core's validation compares
overlapping fields pairwise: so every bound is checked here first, on the parsed AST.
Each fragment is measured once, after the fragments it spreads (a spread back into a
fragment being measured — a cycle, reported by validation — counts nothing), and the
figures saturate just past their bound, so no count grows with the expansion.

What is measured, per operation and per fragment definition (validation reads both):
- depth: the deepest schema field (`{ me { id } }` has depth 2); introspection and
  unknown fields do not count, their selections are still walked;
- aliases and fields: aliased fields, and fields of any kind, fragments expanded;
- in each selection set: the fields merged into it (inline fragments and spreads
  flattened), and the fields with a selection set sharing one response name
  (validation compares those pairwise, recursively);
and per request, for the operation that runs: cost, the field resolutions, each field
costing the product of the page sizes of the paginated fields above it.
"""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLField,
    GraphQLNamedType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    Undefined,
    get_named_type,
    value_from_ast,
    value_from_ast_untyped,
)

from resolvers.errors import (
    QUERY_TOO_DEEP,
    TOO_MANY_ALIASES,
    TOO_MANY_FIELDS,
    TOO_MANY_OPERATIONS,
)

PAGE_SIZE_ARGUMENT = "first"


class LimitExceeded(Exception):
    def __init__(self, code: str, message: str, maximum: int, actual: int | None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.maximum = maximum
        self.actual = actual


@dataclass(frozen=True)
class Limits:
    max_document_chars: int
    max_depth: int
    max_aliases: int
    max_tokens: int
    max_cost: int
    max_fields: int
    max_selections: int
    max_repeated_fields: int
    max_operations: int


@dataclass(frozen=True)
class Shape:
    """What a selection set amounts to, its fragments expanded (counts saturate at CEILING)."""

    depth: int = 0  # deepest schema field, this set's own fields at depth 1
    aliases: int = 0
    fields: int = 0
    merged: int = 0  # fields merged into this set: inline fragments and spreads flattened
    # Response name → fields with a selection set merged under it: validation compares
    # them pairwise, and each comparison recurses into both selection sets.
    names: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class DocumentMeasure:
    """A document's fragments in the order they are measured (each after what it spreads)."""

    fragments: dict[str, FragmentDefinitionNode]
    order: list[str]


# Counts saturate here: a fan-out of fragments selects up to 2^(tokens/5) fields.
CEILING = 2**62


def measure_document(
    schema: GraphQLSchema, document: DocumentNode, limits: Limits
) -> DocumentMeasure:
    """Raises LimitExceeded for the first definition that breaks a bound; linear in the AST."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if len(operations) > limits.max_operations:
        raise LimitExceeded(
            TOO_MANY_OPERATIONS,
            f"The document has {len(operations)} operations; the limit is {limits.max_operations}.",
            limits.max_operations,
            len(operations),
        )
    # As graphql-core reads them: a repeated name (a validation error) means the last one.
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    order = _dependency_order(fragments)
    walker = _ShapeWalker(schema, limits)
    for name in order:
        fragment = fragments[name]
        scope = schema.get_type(fragment.type_condition.name.value)
        walker.shapes[name] = _checked(walker.shape(fragment.selection_set, scope), limits)
    for operation in operations:
        _checked(walker.shape(operation.selection_set, _root(schema, operation)), limits)
    return DocumentMeasure(fragments, order)


def _root(schema: GraphQLSchema, operation: OperationDefinitionNode) -> GraphQLNamedType | None:
    return schema.get_root_type(operation.operation)


def _fields(scope: GraphQLNamedType | None) -> Mapping[str, GraphQLField]:
    """The schema fields of a type: none for an unknown type or an introspection type
    (introspection is not counted; `__schema` and `__type` are not in Query's fields)."""
    if scope is None or scope.name.startswith("__"):
        return {}
    return getattr(scope, "fields", {})


def _count(value: int) -> str:
    return f"more than {CEILING}" if value >= CEILING else str(value)


def _checked(shape: Shape, limits: Limits) -> Shape:
    if shape.depth > limits.max_depth:
        raise LimitExceeded(
            QUERY_TOO_DEEP,
            f"The query has depth {shape.depth}; the limit is {limits.max_depth}.",
            limits.max_depth,
            shape.depth,
        )
    if shape.aliases > limits.max_aliases:
        raise LimitExceeded(
            TOO_MANY_ALIASES,
            f"The query has {_count(shape.aliases)} aliases; the limit is {limits.max_aliases}.",
            limits.max_aliases,
            shape.aliases,
        )
    if shape.fields > limits.max_fields:
        raise LimitExceeded(
            TOO_MANY_FIELDS,
            f"The query selects {_count(shape.fields)} fields (fragments expanded); the limit "
            f"is {limits.max_fields}.",
            limits.max_fields,
            shape.fields,
        )
    return shape


def _spreads(selection_set: SelectionSetNode) -> Iterator[str]:
    """The names of the fragments spread anywhere in a selection set."""
    stack = [selection_set]
    while stack:
        for selection in stack.pop().selections:
            if isinstance(selection, FragmentSpreadNode):
                yield selection.name.value
            elif isinstance(selection, FieldNode | InlineFragmentNode) and selection.selection_set:
                stack.append(selection.selection_set)


def _dependency_order(fragments: Mapping[str, FragmentDefinitionNode]) -> list[str]:
    """Every defined fragment after the fragments it spreads (depth-first post-order, no
    recursion: a chain of fragments is as long as the token bound allows)."""
    spreads = {
        name: [s for s in dict.fromkeys(_spreads(f.selection_set)) if s in fragments]
        for name, f in fragments.items()
    }
    order: list[str] = []
    seen: set[str] = set()
    for root in fragments:
        if root in seen:
            continue
        seen.add(root)
        stack = [(root, iter(spreads[root]))]
        while stack:
            name, pending = stack[-1]
            for spread in pending:
                if spread not in seen:
                    seen.add(spread)
                    stack.append((spread, iter(spreads[spread])))
                    break
            else:
                stack.pop()
                order.append(name)
    return order


class _ShapeWalker:
    def __init__(self, schema: GraphQLSchema, limits: Limits) -> None:
        self.schema = schema
        self.limits = limits
        self.shapes: dict[str, Shape] = {}  # the fragments measured so far

    def shape(self, selection_set: SelectionSetNode, parent: GraphQLNamedType | None) -> Shape:
        """Recursive in nesting only, which the parser bounds (about 200 levels)."""
        depth = aliases = fields = merged = 0
        names: dict[str, int] = {}
        spread_names: list[Mapping[str, int]] = []
        # Inline fragments are flattened into this set, as validation and execution do.
        level: list[tuple[SelectionSetNode, GraphQLNamedType | None]] = [(selection_set, parent)]
        while level:
            current, scope = level.pop()
            for selection in current.selections:
                if isinstance(selection, FieldNode):
                    fields += 1
                    merged += 1
                    aliases += selection.alias is not None
                    if selection.selection_set is not None:
                        name = (selection.alias or selection.name).value
                        names[name] = names.get(name, 0) + 1
                    definition = _fields(scope).get(selection.name.value)
                    inner = _EMPTY
                    if selection.selection_set is not None:
                        inner_type = get_named_type(definition.type) if definition else None
                        inner = self.shape(selection.selection_set, inner_type)
                        fields = min(fields + inner.fields, CEILING)
                        aliases = min(aliases + inner.aliases, CEILING)
                    # __typename, introspection and unknown fields add no depth.
                    depth = max(depth, inner.depth + (definition is not None))
                elif isinstance(selection, InlineFragmentNode):
                    condition = selection.type_condition
                    inline = self.schema.get_type(condition.name.value) if condition else scope
                    level.append((selection.selection_set, inline))
                elif isinstance(selection, FragmentSpreadNode):
                    spread = self.shapes.get(selection.name.value)
                    if spread is None:
                        continue  # unknown, or back into a cycle: validation reports both
                    depth = max(depth, spread.depth)
                    aliases = min(aliases + spread.aliases, CEILING)
                    fields = min(fields + spread.fields, CEILING)
                    merged += spread.merged
                    spread_names.append(spread.names)
                self._check_merged(merged)
        return Shape(depth, aliases, fields, merged, self._repeats(names, spread_names))

    def _check_merged(self, merged: int) -> None:
        maximum = self.limits.max_selections
        if merged > maximum:
            raise LimitExceeded(
                TOO_MANY_FIELDS,
                f"A selection set merges more than {maximum} fields (inline fragments and "
                "spreads flattened).",
                maximum,
                None,
            )

    def _repeats(
        self, names: dict[str, int], spread_names: list[Mapping[str, int]]
    ) -> Mapping[str, int]:
        """Fields with a selection set per response name in the merged set; raises past the
        bound. The work is bounded by the merged count (at most max_selections), checked
        before. Repeated leaves (`id`, `__typename` in every fragment) are compared without
        recursion, so only max_selections bounds them."""
        if not names and len(spread_names) == 1:
            return spread_names[0]  # `{ ...F }`: F's own counts, already checked
        for counts in spread_names:
            for name, count in counts.items():
                names[name] = names.get(name, 0) + count
        maximum = self.limits.max_repeated_fields
        for name, count in names.items():
            if count > maximum:
                raise LimitExceeded(
                    TOO_MANY_FIELDS,
                    f"A selection set selects '{name}' {count} times; the limit is {maximum}.",
                    maximum,
                    count,
                )
        return names


_EMPTY = Shape()


def operation_cost(
    schema: GraphQLSchema,
    measure: DocumentMeasure,
    operation: OperationDefinitionNode,
    variables: Mapping[str, Any],
) -> int:
    """Field resolutions of the operation with these variables (saturating at CEILING).

    Schema fields only (introspection is not counted). A field costs the product of the
    page sizes (`first`, else its default) of the paginated fields above it: a fragment's
    cost is linear in that product, so each fragment is costed once, at product 1."""
    values = {
        v.variable.name.value: value_from_ast_untyped(v.default_value)
        for v in operation.variable_definitions or ()
        if v.default_value is not None
    }
    values.update(variables)
    costs: dict[str, int] = {}

    def cost(selection_set: SelectionSetNode, parent: GraphQLNamedType | None) -> int:
        total = 0
        level: list[tuple[SelectionSetNode, GraphQLNamedType | None]] = [(selection_set, parent)]
        while level:
            current, scope = level.pop()
            for selection in current.selections:
                if isinstance(selection, FieldNode):
                    definition = _fields(scope).get(selection.name.value)
                    if definition is None:
                        continue
                    total += 1
                    if selection.selection_set is not None:
                        inner = cost(selection.selection_set, get_named_type(definition.type))
                        page = _page_size(selection, definition.args, values)
                        total = min(total + page * inner, CEILING)
                elif isinstance(selection, InlineFragmentNode):
                    condition = selection.type_condition
                    inline_scope = schema.get_type(condition.name.value) if condition else scope
                    level.append((selection.selection_set, inline_scope))
                elif isinstance(selection, FragmentSpreadNode):
                    total = min(total + costs.get(selection.name.value, 0), CEILING)
        return total

    for name in measure.order:
        fragment = measure.fragments[name]
        scope = schema.get_type(fragment.type_condition.name.value)
        costs[name] = cost(fragment.selection_set, scope)
    return cost(operation.selection_set, _root(schema, operation))


def _page_size(node: FieldNode, args: Mapping[str, Any], values: dict[str, Any]) -> int:
    argument = args.get(PAGE_SIZE_ARGUMENT)
    if argument is None:
        return 1
    size: Any = Undefined
    for given in node.arguments or ():
        if given.name.value == PAGE_SIZE_ARGUMENT:
            size = value_from_ast(given.value, argument.type, values)
    if size is Undefined or size is None:
        size = argument.default_value
    # An invalid size is refused by the resolver; it must not make the query look cheaper.
    return size if isinstance(size, int) and size > 1 else 1
