// graphql-request, configured as its docs show, against the gateway: a query, a query
// refused by a limit (its ClientError), and a mutation. Prints the HTTP exchanges and what
// each call returned, as JSON.
// Usage: GATEWAY_URL=… GATEWAY_TOKEN=… node graphql_request.mjs
import { ClientError, GraphQLClient, gql } from "graphql-request";

const { GATEWAY_URL: url, GATEWAY_TOKEN: token } = process.env;

const exchanges = [];
async function recordingFetch(input, init) {
  const response = await fetch(input, init);
  exchanges.push({
    method: init.method,
    accept: new Headers(init.headers).get("accept"),
    contentType: new Headers(init.headers).get("content-type"),
    status: response.status,
    responseType: response.headers.get("content-type"),
  });
  return response;
}

const client = new GraphQLClient(`${url}/graphql`, {
  headers: { authorization: `Bearer ${token}` },
  fetch: recordingFetch,
});

const results = [];
async function run(document, variables) {
  try {
    results.push({ data: await client.request(document, variables) });
  } catch (error) {
    if (!(error instanceof ClientError)) throw error;
    results.push({ status: error.response.status, errors: error.response.errors });
  }
}

await run(gql`
  query Cohort($id: Int!) {
    cohort(id: $id) {
      id
      name
      seats {
        utilization
      }
    }
  }
`, { id: 101 });
await run(gql`
  query TooManyAliases {
    a1: me { id } a2: me { id } a3: me { id } a4: me { id } a5: me { id } a6: me { id }
    a7: me { id } a8: me { id } a9: me { id } a10: me { id } a11: me { id } a12: me { id }
    a13: me { id } a14: me { id } a15: me { id } a16: me { id }
  }
`);
await run(gql`
  mutation Refresh {
    requestRefresh(cohortId: 102) {
      accepted
      target
    }
  }
`);
process.stdout.write(JSON.stringify({ exchanges, results }) + "\n");
