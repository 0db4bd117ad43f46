// The GraphQL-over-HTTP spec's reference audit (graphql-http's auditServer) against the
// gateway, every request carrying a bearer token; prints the results as JSON.
// Usage: GATEWAY_URL=http://127.0.0.1:8000 GATEWAY_TOKEN=... node audit.mjs
import { auditServer } from "graphql-http";

const { GATEWAY_URL: url, GATEWAY_TOKEN: token } = process.env;

function authorizedFetch(input, init = {}) {
  const headers = new Headers(init.headers);
  headers.set("authorization", `Bearer ${token}`);
  return fetch(input, { ...init, headers });
}

const results = await auditServer({ url: `${url}/graphql`, fetchFn: authorizedFetch });
process.stdout.write(
  JSON.stringify(
    results.map(({ id, name, status, reason }) => ({ id, name, status, reason: reason ?? null })),
  ) + "\n",
);
