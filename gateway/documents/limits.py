"""Parse once, measure once, validate once, and bound what a document may cost before it runs.

Documents are parsed (with a token bound), measured (gateway/documents/measure.py: every
bound but cost, in linear time) and only then validated by graphql-core, once per
distinct text, and kept in an LRU with their refusals; Strawberry then executes the
prepared AST (`UsePreparedDocument`) instead of parsing and validating again. Cost
depends on the variables: it is measured per request, in one linear walk.
"""

import copy
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import strawberry
from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    GraphQLSyntaxError,
    OperationDefinitionNode,
    parse,
    specified_rules,
    validate,
)
from graphql.validation import (
    ASTValidationRule,
    NoSchemaIntrospectionCustomRule,
    OverlappingFieldsCanBeMergedRule,
    ValidationContext,
)
from graphql.validation.validate import ValidationAbortedError
from strawberry.extensions import SchemaExtension
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule

from gateway.documents.measure import (
    CEILING,
    DocumentMeasure,
    LimitExceeded,
    Limits,
    measure_document,
    operation_cost,
)
from gateway.settings import Settings
from resolvers.errors import (
    QUERY_TOO_COSTLY,
    QUERY_TOO_DEEP,
    QUERY_TOO_LONG,
    TOO_MANY_FIELDS,
    TOO_MANY_TOKENS,
)

__all__ = ["DocumentPreparer", "LimitExceeded", "Limits", "PreparedDocument", "limits_of"]

PREPARED_DOCUMENTS_MAX = 1_000
# A prepared document's AST takes about 70 bytes per character of its text: the LRU keeps
# at most this many characters of documents (about 70 MB of ASTs), whatever their number.
PREPARED_DOCUMENTS_MAX_CHARS = 1_048_576
# Work units of graphql-core's overlapping-fields rule (2 per pair of fields compared,
# about 0.5–1 µs each): a backstop behind the bounds measured before validation, which
# keep every document met so far under a tenth of it (the dashboard's own: under 600).
OVERLAP_BUDGET = 20_000
# Each error's location is found by scanning the text: graphql-core's default is 100.
MAX_VALIDATION_ERRORS = 20


class OverlapBudgetExhausted(ValidationAbortedError):
    pass


class BoundedOverlappingFields(OverlappingFieldsCanBeMergedRule):
    """graphql-core's rule with a budget of OVERLAP_BUDGET units (its own default is
    500,000, about a second of CPU): past it, validation stops and the document is refused."""

    def __init__(self, context: ValidationContext) -> None:
        super().__init__(context)
        self.rule_context.remaining_complexity_budget = OVERLAP_BUDGET

    def enter_selection_set(self, *args: Any) -> None:
        try:
            super().enter_selection_set(*args)
        except ValidationAbortedError:
            if self.rule_context.remaining_complexity_budget < 0:
                raise OverlapBudgetExhausted("Validation aborted.") from None
            raise


def limits_of(settings: Settings) -> Limits:
    return Limits(
        max_document_chars=settings.max_document_chars,
        max_depth=settings.max_depth,
        max_aliases=settings.max_aliases,
        max_tokens=settings.max_tokens,
        max_cost=settings.max_cost,
        max_fields=settings.max_fields,
        max_selections=settings.max_selections,
        max_repeated_fields=settings.max_repeated_fields,
        max_operations=settings.max_operations,
    )


@dataclass(frozen=True)
class PreparedDocument:
    """A parsed document (None after a syntax error), the errors that stop it, and its
    measure; or the limit it breaks (`refused`), remembered like the rest."""

    document: DocumentNode | None
    errors: list[GraphQLError]
    measure: DocumentMeasure | None = None
    refused: LimitExceeded | None = None


class DocumentPreparer:
    def __init__(
        self,
        schema: GraphQLSchema,
        limits: Limits,
        *,
        introspection: bool,
        suggestions: bool,
        max_entries: int = PREPARED_DOCUMENTS_MAX,
        max_chars: int = PREPARED_DOCUMENTS_MAX_CHARS,
    ) -> None:
        self.schema = schema
        self.limits = limits
        self.suggestions = suggestions
        rules: list[type[ASTValidationRule]] = [
            BoundedOverlappingFields if rule is OverlappingFieldsCanBeMergedRule else rule
            for rule in specified_rules
        ]
        rules += [
            MaybeNullValidationRule,
            OneOfInputValidationRule,
        ]
        if not introspection:
            rules.append(NoSchemaIntrospectionCustomRule)
        self.rules = tuple(rules)
        # What these rules cover: Strawberry's own validation is skipped only for those.
        self.covers = frozenset({*rules, OverlappingFieldsCanBeMergedRule})
        self.max_entries = max_entries
        self.max_chars = max_chars
        self._chars = 0
        self._prepared: OrderedDict[str, PreparedDocument] = OrderedDict()

    def cached(self, query: str | None) -> PreparedDocument | None:
        return self._prepared.get(query) if query is not None else None

    def prepare(self, query: str) -> PreparedDocument:
        """Raises LimitExceeded when the document breaks a limit that does not depend on
        the variables; a document is parsed, measured and validated once (refusals too)."""
        limit = self.limits.max_document_chars
        if len(query) > limit:  # before lexing, which costs about 0.2 µs per character
            raise LimitExceeded(
                QUERY_TOO_LONG, f"The document is longer than {limit} characters.", limit, None
            )
        prepared = self._prepared.get(query)
        if prepared is None:
            prepared = self._parse_measure_validate(query)
            self._prepared[query] = prepared
            self._chars += len(query)
            while len(self._prepared) > self.max_entries or self._chars > self.max_chars:
                evicted, _ = self._prepared.popitem(last=False)
                self._chars -= len(evicted)
        else:
            self._prepared.move_to_end(query)
        if prepared.refused is not None:
            raise prepared.refused
        return prepared

    def _parse_measure_validate(self, query: str) -> PreparedDocument:
        """Every bound is checked in linear time before graphql-core's validation, whose
        overlapping-fields rule is quadratic in what it compares."""
        max_tokens, max_depth = self.limits.max_tokens, self.limits.max_depth
        too_deep = LimitExceeded(
            QUERY_TOO_DEEP, f"The query is nested deeper than {max_depth}.", max_depth, None
        )
        try:
            document = parse(query, max_tokens=max_tokens)
            measure = measure_document(self.schema, document, self.limits)
            errors = validate(
                self.schema,
                document,
                self.rules,
                max_errors=MAX_VALIDATION_ERRORS,
                hide_suggestions=not self.suggestions,
            )
        except LimitExceeded as exc:
            return PreparedDocument(None, [], refused=exc)
        except GraphQLSyntaxError as error:
            if f"Document contains more than {max_tokens} tokens" in error.message:
                too_many = LimitExceeded(
                    TOO_MANY_TOKENS,
                    f"The document has more than {max_tokens} tokens.",
                    max_tokens,
                    None,
                )
                return PreparedDocument(None, [], refused=too_many)
            # graphql-core's own bound on nesting (about 200 levels).
            if "Document is nested too deeply" in error.message:
                return PreparedDocument(None, [], refused=too_deep)
            return PreparedDocument(None, [error])
        except RecursionError:
            return PreparedDocument(None, [], refused=too_deep)
        if errors and isinstance(errors[-1], ValidationAbortedError):
            if isinstance(errors[-1], OverlapBudgetExhausted):
                too_many = LimitExceeded(
                    TOO_MANY_FIELDS,
                    "The document repeats fields that take too many comparisons to validate.",
                    OVERLAP_BUDGET,
                    None,
                )
                return PreparedDocument(None, [], refused=too_many)
            if errors[-1].message == "Validation aborted.":  # graphql-core's RecursionError
                return PreparedDocument(None, [], refused=too_deep)
        return PreparedDocument(document, errors, measure)

    def check(
        self,
        prepared: PreparedDocument,
        operation: OperationDefinitionNode,
        variables: Mapping[str, Any] | None,
    ) -> None:
        """Raises LimitExceeded when the operation costs too much with these variables."""
        assert prepared.measure is not None
        cost = operation_cost(self.schema, prepared.measure, operation, variables or {})
        maximum = self.limits.max_cost
        if cost > maximum:
            shown = f"more than {CEILING}" if cost >= CEILING else str(cost)
            raise LimitExceeded(
                QUERY_TOO_COSTLY,
                f"The query costs {shown}; the limit is {maximum}.",
                maximum,
                cost,
            )


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
            if set(context.validation_rules) <= self.preparer.covers:
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
        limits_of(settings),
        introspection=settings.introspection_enabled,
        suggestions=settings.field_suggestions_enabled,
    )
    return preparer, with_prepared_documents(schema, preparer)
