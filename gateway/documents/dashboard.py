"""The dashboard's own operations (gateway/documents/operations/*.graphql), exactly as its
clients send them, and the trusted-documents manifest built from them."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from graphql import (
    DocumentNode,
    FieldNode,
    NameNode,
    Node,
    OperationDefinitionNode,
    SelectionSetNode,
    Visitor,
    parse,
    print_ast,
    visit,
)

from gateway.documents.persisted import MANIFEST_FORMAT, sha256_hex

OPERATIONS_DIR = Path(__file__).parent / "operations"


@dataclass(frozen=True)
class Operation:
    name: str
    type: Literal["query", "mutation", "subscription"]
    body: str
    sha256: str


class _AddTypename(Visitor):
    """Apollo Client's addTypenameToDocument: `__typename` last in every selection set below
    the operation's own, unless the set already selects a `__` field."""

    typename = FieldNode(
        name=NameNode(value="__typename"), arguments=(), directives=(), selection_set=None
    )

    def enter_selection_set(
        self, node: SelectionSetNode, key: Any, parent: Node | None, *_: Any
    ) -> SelectionSetNode | None:
        if isinstance(parent, OperationDefinitionNode):
            return None
        if any(isinstance(s, FieldNode) and s.name.value.startswith("__") for s in node.selections):
            return None
        return SelectionSetNode(selections=(*node.selections, self.typename))


def add_typename(document: DocumentNode) -> DocumentNode:
    return visit(document, _AddTypename())  # type: ignore[no-any-return]


def load_operation(path: Path) -> Operation:
    """One named operation, exactly as Apollo Client sends it: `__typename` added, printed in
    graphql-js's canonical form, so its hash is the one the client computes."""
    document = parse(path.read_text())
    [definition] = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if definition.name is None or definition.name.value != path.stem:
        raise ValueError(f"{path}: the operation must be named {path.stem}")
    body = print_ast(add_typename(document))
    return Operation(path.stem, definition.operation.value, body, sha256_hex(body))  # type: ignore[arg-type]


def dashboard_operations(directory: Path = OPERATIONS_DIR) -> dict[str, Operation]:
    """The web and mobile clients' operations, by name."""
    operations = (load_operation(p) for p in sorted(directory.glob("*.graphql")))
    return {op.name: op for op in operations}


def build_manifest(operations: dict[str, Operation]) -> dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "version": 1,
        "operations": [
            {"id": op.sha256, "name": op.name, "type": op.type, "body": op.body}
            for op in operations.values()
        ],
    }
