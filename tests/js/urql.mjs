// urql (@urql/core), configured as its docs show, against the gateway; prints as JSON every
// HTTP exchange it made and what each operation returned.
// Usage: GATEWAY_URL=… GATEWAY_TOKEN=… node urql.mjs default|persisted|subscription
//   default       the default client (cacheExchange, fetchExchange): a query twice, a mutation
//   persisted     @urql/exchange-persisted with preferGetForPersistedQueries: a query three
//                 times (miss, registered, hit)
//   subscription  subscriptionExchange over graphql-ws: the first update of `dashboard`
import { Client, cacheExchange, fetchExchange, gql, subscriptionExchange } from "@urql/core";
import { persistedExchange } from "@urql/exchange-persisted";
import { createClient as createWsClient } from "graphql-ws";
import WebSocket from "ws";

const [mode] = process.argv.slice(2);
const { GATEWAY_URL: url, GATEWAY_TOKEN: token } = process.env;

const exchanges = [];
async function recordingFetch(uri, options) {
  const response = await fetch(uri, options);
  exchanges.push({
    method: options.method,
    url: String(uri),
    accept: new Headers(options.headers).get("accept"),
    body: options.body ?? null,
    status: response.status,
    headers: Object.fromEntries(response.headers),
    response: await response.clone().text(),
  });
  return response;
}

const SUMMARY = gql`
  query UrqlSummary {
    me {
      id
      summary {
        totalCohorts
        activeCohorts
      }
    }
  }
`;
const REFRESH = gql`
  mutation UrqlRefresh($id: Int!) {
    requestRefresh(cohortId: $id) {
      accepted
      target
    }
  }
`;
const DASHBOARD = gql`
  subscription UrqlDashboard {
    dashboard {
      changedCohortIds
      summary {
        totalCohorts
      }
    }
  }
`;

function outcome({ data, error }) {
  if (!error) return { data };
  return {
    data: data ?? null,
    error: error.message,
    graphQLErrors: error.graphQLErrors.map((e) => ({ message: e.message, code: e.extensions?.code })),
    networkError: error.networkError ? String(error.networkError) : null,
  };
}

const fetchOptions = { headers: { authorization: `Bearer ${token}` } };
const results = [];
if (mode === "default") {
  const client = new Client({
    url: `${url}/graphql`,
    exchanges: [cacheExchange, fetchExchange],
    fetchOptions,
    fetch: recordingFetch,
  });
  results.push(outcome(await client.query(SUMMARY, {}).toPromise()));
  results.push(outcome(await client.query(SUMMARY, {}, { requestPolicy: "network-only" }).toPromise()));
  results.push(outcome(await client.mutation(REFRESH, { id: 101 }).toPromise()));
} else if (mode === "persisted") {
  const client = new Client({
    url: `${url}/graphql`,
    exchanges: [
      cacheExchange,
      persistedExchange({ preferGetForPersistedQueries: true }),
      fetchExchange,
    ],
    fetchOptions,
    fetch: recordingFetch,
  });
  for (let i = 0; i < 3; i++) {
    results.push(outcome(await client.query(SUMMARY, {}, { requestPolicy: "network-only" }).toPromise()));
  }
} else if (mode === "subscription") {
  const wsClient = createWsClient({
    url: `${url.replace(/^http/, "ws")}/graphql`,
    webSocketImpl: WebSocket,
    connectionParams: { Authorization: `Bearer ${token}` },
    retryAttempts: 0,
  });
  const client = new Client({
    url: `${url}/graphql`,
    exchanges: [
      cacheExchange,
      fetchExchange,
      subscriptionExchange({
        forwardSubscription(request) {
          const input = { ...request, query: request.query || "" };
          return {
            subscribe(sink) {
              const unsubscribe = wsClient.subscribe(input, sink);
              return { unsubscribe };
            },
          };
        },
      }),
    ],
    fetchOptions,
    fetch: recordingFetch,
  });
  const first = await new Promise((resolve) => {
    const { unsubscribe } = client.subscription(DASHBOARD, {}).subscribe((result) => {
      unsubscribe();
      resolve(result);
    });
  });
  results.push(outcome(first));
  await wsClient.dispose();
} else {
  throw new Error(`unknown mode ${mode}`);
}
process.stdout.write(JSON.stringify({ exchanges, results }) + "\n");
