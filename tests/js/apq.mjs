// Runs one operation twice through a real Apollo Client with the persisted-queries link
// (GET for hashed queries) and prints, as JSON, every HTTP exchange it made and the data.
// Usage: GATEWAY_URL=http://127.0.0.1:8000 GATEWAY_TOKEN=... node apq.mjs Operation.graphql [variablesJSON]
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";

import { ApolloClient, HttpLink, InMemoryCache, gql } from "@apollo/client";
import { PersistedQueryLink } from "@apollo/client/link/persisted-queries";

const [file, variablesJson = "{}"] = process.argv.slice(2);
const { GATEWAY_URL: url, GATEWAY_TOKEN: token } = process.env;
const sha256 = (text) => createHash("sha256").update(text).digest("hex");

const exchanges = [];
async function recordingFetch(uri, options) {
  const response = await fetch(uri, options);
  exchanges.push({
    method: options.method,
    url: String(uri),
    body: options.body ?? null,
    status: response.status,
    headers: Object.fromEntries(response.headers),
    response: await response.clone().text(),
  });
  return response;
}

const client = new ApolloClient({
  link: new PersistedQueryLink({ sha256, useGETForHashedQueries: true }).concat(
    new HttpLink({
      uri: `${url}/graphql`,
      fetch: recordingFetch,
      headers: { authorization: `Bearer ${token}` },
    }),
  ),
  cache: new InMemoryCache(),
});

const query = gql(readFileSync(file, "utf8"));
const variables = JSON.parse(variablesJson);
const results = [];
for (let i = 0; i < 2; i++) {
  const { data, error } = await client.query({ query, variables, fetchPolicy: "network-only" });
  if (error) throw error;
  results.push(data);
}
process.stdout.write(JSON.stringify({ exchanges, results }) + "\n");
