"""Parse once, validate once, and bound what a document may cost before it runs.

Documents are parsed (with a token bound) and validated by graphql-core once per distinct
text and kept in an LRU; Strawberry then executes the prepared AST (`UsePreparedDocument`)
instead of parsing and validating again. Depth, aliases and cost are measured per request
by one walk over the selected operation (cost depends on the variables).
"""

import copy
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import strawberry
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLNamedType,
    GraphQLSchema,
    GraphQLSyntaxError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    Undefined,
    get_named_type,
    parse,
    specified_rules,
    validate,
    value_from_ast,
    value_from_ast_untyped,
)
from graphql.validation import ASTValidationRule, NoSchemaIntrospectionCustomRule
from strawberry.extensions import SchemaExtension
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule

from gateway.settings import Settings
from resolvers.errors import QUERY_TOO_COSTLY, QUERY_TOO_DEEP, TOO_MANY_ALIASES, TOO_MANY_TOKENS

PREPARED_DOCUMENTS_MAX = 1_000
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
    max_depth: int
    max_aliases: int
    max_tokens: int
    max_cost: int

    @classmethod
    def from_settings(cls, settings: Settings) -> "Limits":
        return cls(settings.max_depth, settings.max_aliases, settings.max_tokens, settings.max_cost)


@dataclass(frozen=True)
class PreparedDocument:
    """A parsed document (None after a syntax error) and the errors that stop it."""

    document: DocumentNode | None
    errors: list[GraphQLError]


class DocumentPreparer:
    def __init__(
        self,
        schema: GraphQLSchema,
        limits: Limits,
        *,
        introspection: bool,
        suggestions: bool,
        max_entries: int = PREPARED_DOCUMENTS_MAX,
    ) -> None:
        self.schema = schema
        self.limits = limits
        self.suggestions = suggestions
        rules: list[type[ASTValidationRule]] = [
            *specified_rules,
            MaybeNullValidationRule,
            OneOfInputValidationRule,
        ]
        if not introspection:
            rules.append(NoSchemaIntrospectionCustomRule)
        self.rules = tuple(rules)
        self.max_entries = max_entries
        self._prepared: OrderedDict[str, PreparedDocument] = OrderedDict()

    def cached(self, query: str | None) -> PreparedDocument | None:
        return self._prepared.get(query) if query is not None else None

    def prepare(self, query: str) -> PreparedDocument:
        """Raises LimitExceeded when the document has too many tokens."""
        prepared = self._prepared.get(query)
        if prepared is None:
            prepared = self._parse_and_validate(query)
            self._prepared[query] = prepared
            while len(self._prepared) > self.max_entries:
                self._prepared.popitem(last=False)
        else:
            self._prepared.move_to_end(query)
        return prepared

    def _parse_and_validate(self, query: str) -> PreparedDocument:
        max_tokens, max_depth = self.limits.max_tokens, self.limits.max_depth
        too_deep = LimitExceeded(
            QUERY_TOO_DEEP, f"The query is nested deeper than {max_depth}.", max_depth, None
        )
        try:
            document = parse(query, max_tokens=max_tokens)
            errors = validate(
                self.schema, document, self.rules, hide_suggestions=not self.suggestions
            )
        except GraphQLSyntaxError as error:
            if f"Document contains more than {max_tokens} tokens" in error.message:
                raise LimitExceeded(
                    TOO_MANY_TOKENS,
                    f"The document has more than {max_tokens} tokens.",
                    max_tokens,
                    None,
                ) from None
            # graphql-core's own bound on nesting (about 200 levels).
            if "Document is nested too deeply" in error.message:
                raise too_deep from None
            return PreparedDocument(None, [error])
        except RecursionError:
            raise too_deep from None
        return PreparedDocument(document, errors)

    def check(
        self,
        document: DocumentNode,
        operation: OperationDefinitionNode,
        variables: Mapping[str, Any] | None,
    ) -> None:
        """Raises LimitExceeded for the first bound the operation breaks."""
        measure = measure_operation(self.schema, document, operation, variables or {})
        limits = self.limits
        if measure.depth > limits.max_depth:
            raise LimitExceeded(
                QUERY_TOO_DEEP,
                f"The query has depth {measure.depth}; the limit is {limits.max_depth}.",
                limits.max_depth,
                measure.depth,
            )
        if measure.aliases > limits.max_aliases:
            raise LimitExceeded(
                TOO_MANY_ALIASES,
                f"The query has {measure.aliases} aliases; the limit is {limits.max_aliases}.",
                limits.max_aliases,
                measure.aliases,
            )
        if measure.cost > limits.max_cost:
            raise LimitExceeded(
                QUERY_TOO_COSTLY,
                f"The query costs {measure.cost}; the limit is {limits.max_cost}.",
                limits.max_cost,
                measure.cost,
            )


@dataclass
class Measure:
    depth: int = 0
    aliases: int = 0
    cost: int = 0


def measure_operation(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation: OperationDefinitionNode,
    variables: Mapping[str, Any],
) -> Measure:
    """Depth and cost count schema fields (introspection is not counted); aliases count all.

    A field costs the product of the page sizes (`first`, else its default) of the paginated
    fields above it; a paginated field multiplies the cost of everything below it.
    """
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    values = {
        v.variable.name.value: value_from_ast_untyped(v.default_value)
        for v in operation.variable_definitions or ()
        if v.default_value is not None
    }
    values.update(variables)
    measure = Measure()

    def walk(
        selection_set: SelectionSetNode,
        parent: GraphQLNamedType | None,
        depth: int,
        multiplier: int,
        seen: frozenset[str],
    ) -> None:
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                measure.aliases += selection.alias is not None
                field = getattr(parent, "fields", {}).get(selection.name.value)
                if field is None:
                    continue  # __typename, __schema, or unknown (validation reports it)
                measure.cost += multiplier
                measure.depth = max(measure.depth, depth)
                if selection.selection_set is not None:
                    inner = multiplier * _page_size(selection, field.args, values)
                    walk(
                        selection.selection_set,
                        get_named_type(field.type),
                        depth + 1,
                        inner,
                        seen,
                    )
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                scope = schema.get_type(condition.name.value) if condition else parent
                walk(selection.selection_set, scope, depth, multiplier, seen)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = fragments.get(name)
                if fragment is None or name in seen:
                    continue  # validation reports unknown fragments and cycles
                scope = schema.get_type(fragment.type_condition.name.value)
                walk(fragment.selection_set, scope, depth, multiplier, seen | {name})

    walk(operation.selection_set, schema.get_root_type(operation.operation), 1, 1, frozenset())
    return measure


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


class UsePreparedDocument(SchemaExtension):
    """Hands Strawberry the AST the gateway already parsed (and validated)."""

    def __init__(self, preparer: DocumentPreparer) -> None:
        self.preparer = preparer

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        prepared = self.preparer.cached(context.query)
        if prepared is not None and prepared.document is not None and not prepared.errors:
            context.graphql_document = prepared.document
            # Skip Strawberry's validation only when ours ran every rule it would run.
            if set(context.validation_rules) <= set(self.preparer.rules):
                context.pre_execution_errors = []
        yield


def with_prepared_documents(
    schema: strawberry.Schema, preparer: DocumentPreparer
) -> strawberry.Schema:
    """The same schema (shared types and resolvers) with UsePreparedDocument appended."""
    prepared = copy.copy(schema)
    prepared.extensions = (*schema.extensions, lambda: UsePreparedDocument(preparer))
    return prepared


def prepared_schema(
    schema: strawberry.Schema, settings: Settings
) -> tuple[DocumentPreparer, strawberry.Schema]:
    """A preparer with the settings' limits and rules, and the schema executing on it: each
    document is parsed and validated once (the endpoint, and the answers of a cycle)."""
    preparer = DocumentPreparer(
        schema._schema,
        Limits.from_settings(settings),
        introspection=settings.introspection_enabled,
        suggestions=settings.field_suggestions_enabled,
    )
    return preparer, with_prepared_documents(schema, preparer)
