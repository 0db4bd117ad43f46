"""schema.graphql is the printed schema of the code, and every field is described."""

from pathlib import Path

from graphql import GraphQLInputObjectType, GraphQLObjectType

from gateway.cli import schema_sdl
from resolvers.schema import build_schema

ROOT = Path(__file__).resolve().parents[2]


def test_schema_file_matches_code() -> None:
    committed = (ROOT / "schema.graphql").read_text()
    assert committed == schema_sdl(), "schema.graphql is stale: run `gateway export-schema`"


def test_every_public_field_has_a_description() -> None:
    schema = build_schema()._schema
    missing = []
    for name, type_ in schema.type_map.items():
        if name.startswith("__") or not isinstance(
            type_, (GraphQLObjectType, GraphQLInputObjectType)
        ):
            continue
        if not type_.description:
            missing.append(name)
        missing += [f"{name}.{f}" for f, field in type_.fields.items() if not field.description]
    assert missing == []


def test_date_scalars_name_their_specification() -> None:
    """Clients and codegen learn the wire format of Date and DateTime from @specifiedBy."""
    schema = build_schema()._schema
    assert {name: schema.type_map[name].specified_by_url for name in ("Date", "DateTime")} == {
        "Date": "https://scalars.graphql.org/andimarek/local-date.html",
        "DateTime": "https://scalars.graphql.org/andimarek/date-time.html",
    }
