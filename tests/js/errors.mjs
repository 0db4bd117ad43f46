// Runs one query through a real Apollo Client 4 (HttpLink, its default Accept header) and
// prints, as JSON, how the client reports the outcome: the error's class and its GraphQL
// errors, the HTTP status and content type it saw.
// Usage: GATEWAY_URL=http://127.0.0.1:8000 [GATEWAY_TOKEN=...] node errors.mjs 'query { … }'
import { ApolloClient, CombinedGraphQLErrors, HttpLink, InMemoryCache, gql } from "@apollo/client";

const [query] = process.argv.slice(2);
const { GATEWAY_URL: url, GATEWAY_TOKEN: token } = process.env;

const seen = [];
async function recordingFetch(uri, options) {
  const response = await fetch(uri, options);
  seen.push({
    accept: new Headers(options.headers).get("accept"),
    status: response.status,
    contentType: response.headers.get("content-type"),
  });
  return response;
}

const client = new ApolloClient({
  link: new HttpLink({
    uri: `${url}/graphql`,
    fetch: recordingFetch,
    headers: token ? { authorization: `Bearer ${token}` } : {},
  }),
  cache: new InMemoryCache(),
});

let data = null;
let error = null;
try {
  ({ data } = await client.query({ query: gql(query), fetchPolicy: "network-only" }));
} catch (thrown) {
  error = thrown;
}
process.stdout.write(
  JSON.stringify({
    data: data ?? null,
    errorClass: error?.constructor?.name ?? null,
    graphQLErrors: CombinedGraphQLErrors.is(error) ? error.errors : null,
    exchanges: seen,
  }) + "\n",
);
