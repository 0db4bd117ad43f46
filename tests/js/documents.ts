// The code graphql-codegen generated from codegen.ts (./generated) sending the dashboard's
// operations by document id, three ways: documentId over GET and over POST (plain fetch,
// as the GraphQL-over-HTTP persisted-documents appendix has it), and Apollo Client 4's
// PersistedQueryLink with the generated id as its hash. Prints every exchange as JSON.
// Usage: GATEWAY_URL=… GATEWAY_TOKEN=… npx jiti documents.ts (after npx graphql-codegen)
import { ApolloClient, HttpLink, InMemoryCache } from "@apollo/client";
import { PersistedQueryLink } from "@apollo/client/link/persisted-queries";
import type { TypedDocumentNode } from "@graphql-typed-document-node/core";

import { CohortDetailDocument, DirectorSummaryDocument } from "./generated/graphql";

const { GATEWAY_URL: url, GATEWAY_TOKEN: token } = process.env;
const endpoint = `${url}/graphql`;
const headers = { authorization: `Bearer ${token}` };

type Exchange = { method: string; url: string; body: string | null; status: number; response: unknown };
const exchanges: Exchange[] = [];

async function recordingFetch(input: RequestInfo | URL, init: RequestInit = {}): Promise<Response> {
  const response = await fetch(input, init);
  exchanges.push({
    method: init.method ?? "GET",
    url: String(input),
    body: typeof init.body === "string" ? init.body : null,
    status: response.status,
    response: await response.clone().json(),
  });
  return response;
}

function documentId(document: TypedDocumentNode<unknown, unknown>): string {
  return (document as unknown as { __meta__: { hash: string } }).__meta__.hash;
}

async function byIdOverGet<R, V>(document: TypedDocumentNode<R, V>, variables: V): Promise<R> {
  const params = new URLSearchParams({ documentId: documentId(document), variables: JSON.stringify(variables) });
  const response = await recordingFetch(`${endpoint}?${params}`, {
    headers: { ...headers, accept: "application/graphql-response+json" },
  });
  return (await response.json()).data as R;
}

async function byIdOverPost<R, V>(document: TypedDocumentNode<R, V>, variables: V): Promise<R> {
  const response = await recordingFetch(endpoint, {
    method: "POST",
    headers: { ...headers, "content-type": "application/json", accept: "application/graphql-response+json" },
    body: JSON.stringify({ documentId: documentId(document), variables }),
  });
  return (await response.json()).data as R;
}

const apollo = new ApolloClient({
  link: new PersistedQueryLink({ generateHash: documentId, useGETForHashedQueries: true }).concat(
    new HttpLink({ uri: endpoint, fetch: recordingFetch, headers }),
  ),
  cache: new InMemoryCache(),
});

const summary = await byIdOverGet(DirectorSummaryDocument, {});
const detail = await byIdOverPost(CohortDetailDocument, { id: 101 });
const { data: viaApollo, error } = await apollo.query({
  query: CohortDetailDocument,
  variables: { id: 101 },
  fetchPolicy: "network-only",
});
if (error) throw error;

process.stdout.write(
  JSON.stringify({
    ids: {
      DirectorSummary: documentId(DirectorSummaryDocument),
      CohortDetail: documentId(CohortDetailDocument),
    },
    results: {
      totalCohorts: summary.me.summary.totalCohorts,
      cohortName: detail.cohort.name,
      apolloCohortName: viaApollo?.cohort.name ?? null,
    },
    exchanges,
  }) + "\n",
);
