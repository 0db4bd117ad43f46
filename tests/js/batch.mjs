// Apollo Client 4 with BatchHttpLink, configured as its docs show: two queries issued
// together go out as one POST of a JSON array; prints the exchange and each query's outcome.
// Usage: GATEWAY_URL=… GATEWAY_TOKEN=… node batch.mjs
import { ApolloClient, InMemoryCache, gql } from "@apollo/client";
import { BatchHttpLink } from "@apollo/client/link/batch-http";

const { GATEWAY_URL: url, GATEWAY_TOKEN: token } = process.env;

const exchanges = [];
async function recordingFetch(uri, options) {
  const response = await fetch(uri, options);
  exchanges.push({
    method: options.method,
    accept: new Headers(options.headers).get("accept"),
    body: JSON.parse(options.body),
    status: response.status,
    contentType: response.headers.get("content-type"),
    response: JSON.parse(await response.clone().text()),
  });
  return response;
}

const client = new ApolloClient({
  link: new BatchHttpLink({
    uri: `${url}/graphql`,
    batchMax: 5,
    batchInterval: 20,
    headers: { authorization: `Bearer ${token}` },
    fetch: recordingFetch,
  }),
  cache: new InMemoryCache(),
});

const outcomes = await Promise.all(
  [
    gql`query One { me { id } }`,
    gql`query Two { me { name } }`,
  ].map(async (query) => {
    let data = null;
    let error = null;
    try {
      ({ data } = await client.query({ query, fetchPolicy: "network-only" }));
    } catch (thrown) {
      error = thrown;
    }
    return {
      data: data ?? null,
      errorClass: error?.constructor?.name ?? null,
      message: error?.message ?? null,
      errors: error?.errors?.map((e) => ({ message: e.message, code: e.extensions?.code })) ?? null,
    };
  }),
);
process.stdout.write(JSON.stringify({ exchanges, outcomes }) + "\n");
