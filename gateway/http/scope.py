"""What the HTTP layers share: the GraphQL path and the ASGI scope keys one layer leaves
for another. A module of names only, so that any layer (the fast path, the endpoint,
tracing) imports it without importing the others."""

GRAPHQL_PATH = "/graphql"
# ASGI scope key: (operation, outcome) of this request, set by the endpoint.
OBSERVED = "gateway.observed"
