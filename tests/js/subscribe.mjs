// Subscriptions through the real clients, driven by tests/system/test_subscriptions_js.py.
// Reads commands from stdin, one JSON object per line; writes what each subscription
// receives to stdout, one JSON object per line, with the wall-clock time `t` (seconds):
//   {"do": "ws" | "sse" | "apollo", "name": N, "url": base URL, "token": T,
//    "query": Q, "variables": {...}, "extensions": {...}}   subscribe
//   {"do": "stop", "name": N}                                 unsubscribe
// Events: {"name", "t", "kind": "next", "payload"}, {"kind": "error", "error"},
//         {"kind": "complete"}, {"kind": "closed", "code", "reason"} (WebSocket).
// Exits when stdin closes.
import { createInterface } from "node:readline";

import { ApolloClient, InMemoryCache, gql } from "@apollo/client";
import { GraphQLWsLink } from "@apollo/client/link/subscriptions";
import { createClient as createSseClient } from "graphql-sse";
import { createClient as createWsClient } from "graphql-ws";
import WebSocket from "ws";

const subscriptions = new Map(); // name → function that ends it

function emit(name, kind, fields = {}) {
  process.stdout.write(JSON.stringify({ name, kind, t: Date.now() / 1000, ...fields }) + "\n");
}

async function describe(error) {
  if (Array.isArray(error)) return { errors: error };
  if (error && typeof error.code === "number" && "reason" in error) {
    return { code: error.code, reason: error.reason };
  }
  if (error && error.response) {
    return { status: error.response.status, body: await error.response.json() };
  }
  if (error && error.errors) return { errors: error.errors, message: error.message };
  return { message: String(error && error.message ? error.message : error) };
}

function sink(name) {
  return {
    next: (payload) => emit(name, "next", { payload }),
    error: (error) => describe(error).then((d) => emit(name, "error", { error: d })),
    complete: () => emit(name, "complete"),
  };
}

function wsClient(command) {
  return createWsClient({
    url: command.url.replace(/^http/, "ws") + "/graphql",
    webSocketImpl: WebSocket,
    connectionParams: command.token ? { Authorization: `Bearer ${command.token}` } : {},
    retryAttempts: 0,
    on: { closed: (event) => emit(command.name, "closed", { code: event.code, reason: event.reason }) },
  });
}

function request(command) {
  const out = { query: command.query };
  if (command.variables) out.variables = command.variables;
  if (command.extensions) out.extensions = command.extensions;
  return out;
}

const start = {
  ws(command) {
    const client = wsClient(command);
    const stop = client.subscribe(request(command), sink(command.name));
    return () => {
      stop();
      client.dispose();
    };
  },
  sse(command) {
    const client = createSseClient({
      url: command.url + "/graphql",
      headers: command.token ? { Authorization: `Bearer ${command.token}` } : {},
      retryAttempts: 0,
    });
    const stop = client.subscribe(request(command), sink(command.name));
    return () => {
      stop();
      client.dispose();
    };
  },
  // README: a subscription from Apollo Client with GraphQLWsLink.
  apollo(command) {
    const wsLink = new GraphQLWsLink(wsClient(command));
    const client = new ApolloClient({ link: wsLink, cache: new InMemoryCache() });
    const observable = client.subscribe({ query: gql(command.query), variables: command.variables });
    const subscription = observable.subscribe({
      next: ({ data, error }) =>
        error ? describe(error).then((d) => emit(command.name, "error", { error: d }))
              : emit(command.name, "next", { payload: { data } }),
      error: (error) => describe(error).then((d) => emit(command.name, "error", { error: d })),
      complete: () => emit(command.name, "complete"),
    });
    return () => {
      subscription.unsubscribe();
      client.stop();
      wsLink.client.dispose();
    };
  },
};

const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  if (!line.trim()) return;
  const command = JSON.parse(line);
  if (command.do === "stop") {
    subscriptions.get(command.name)?.();
    subscriptions.delete(command.name);
    emit(command.name, "stopped");
    return;
  }
  subscriptions.set(command.name, start[command.do](command));
});
lines.on("close", () => {
  for (const stop of subscriptions.values()) stop();
  setTimeout(() => process.exit(0), 100);
});
